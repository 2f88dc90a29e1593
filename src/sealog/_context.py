"""Fields that follow the work: contextvars (threads and asyncio tasks) and OpenTelemetry."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

_fields: ContextVar[dict[str, Any] | None] = ContextVar("sealog_context", default=None)


current: Callable[[], dict[str, Any] | None] = _fields.get
"""The fields bound here (a C call: emit asks on every call)."""


class bind:
    """Layer fields over the enclosing context for the duration of the block.

    A class rather than ``@contextmanager``: middleware binds one per request, and a
    generator-based manager costs several times as much to enter and leave.
    """

    __slots__ = ("_given", "_token")

    def __init__(self, **fields: Any) -> None:
        self._given = {k: v for k, v in fields.items() if v is not None}

    @classmethod
    def fields(cls, fields: dict[str, Any]) -> bind:
        """Binds a dict the caller built without None values, as is: middleware's per-request path."""
        binding = cls.__new__(cls)
        binding._given = fields
        return binding

    def __enter__(self) -> dict[str, Any]:
        outer = _fields.get()  # merged on entry: the block layers over what is bound then
        merged = {**outer, **self._given} if outer else self._given
        self._token = _fields.set(merged)
        return merged

    def __exit__(self, *exc: object) -> None:
        _fields.reset(self._token)


TraceIds = Callable[[], tuple[str, str] | None]


def _load_trace_ids() -> tuple[TraceIds | None, Callable[[], object] | None]:
    try:
        from opentelemetry import context as otel_context
        from opentelemetry import trace
    except ImportError:
        return None, None

    # emit asks on every call: read OpenTelemetry's own ContextVar when its runtime context is the
    # default contextvars one (two Python frames fewer), else go through its public function.
    var = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    get_current = var.get if isinstance(var, ContextVar) else otel_context.get_current

    def trace_ids() -> tuple[str, str] | None:
        current = get_current()
        if not current:  # nothing active: skip the span lookup, emit runs this every time
            return None
        ctx = trace.get_current_span(current).get_span_context()
        if not ctx.is_valid:
            return None
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

    return trace_ids, get_current


trace_ids, trace_active = _load_trace_ids()
"""``trace_ids()``: (trace id, span id) of the active span. ``trace_active()``: falsy when no
OpenTelemetry context is active, so emit skips the call to ``trace_ids`` (a C call when
OpenTelemetry keeps its context in a ContextVar). Both None when opentelemetry-api is absent."""
