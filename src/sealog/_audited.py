"""``@log.audited(action)``: an event per call, with outcome, latency and redacted arguments."""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._event import MAX_SAFE_INT

if TYPE_CHECKING:
    from ._log import AuditLog

F = TypeVar("F", bound=Callable[..., Any])
MAX_ARG_DEPTH: Final = 8
MAX_ARG_ITEMS: Final = 50


def _json_safe(value: Any, depth: int = 0) -> Any:
    """Arguments as JSON that emit always accepts: recording a call must never break it.

    Structure is kept (so secret-named keys are redacted by key), what JSON cannot keep
    exactly becomes its ``repr`` (redacted as text like every string).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value) if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else repr(value)[:200]
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(value)
    if depth < MAX_ARG_DEPTH and isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in list(value.items())[:MAX_ARG_ITEMS]}
    if depth < MAX_ARG_DEPTH and isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value[:MAX_ARG_ITEMS]]
    return repr(value)[:200]


def audited(log: AuditLog, action: str, *, record_args: bool = True, **fields: Any) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        signature = inspect.signature(func)

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            if not record_args:
                return {}
            try:
                bound = signature.bind_partial(*args, **kwargs)
            except TypeError:
                return {}
            named = {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
            return {"args": _json_safe(named)}

        def record(started: float, args: tuple[Any, ...], kwargs: dict[str, Any],
                   error: BaseException | None) -> None:
            latency = (time.perf_counter() - started) * 1000
            extra = dict(fields)
            metadata = {**extra.pop("metadata", {}), **arguments(args, kwargs)}
            if error is None:
                log.emit(action=action, latency_ms=latency, metadata=metadata, **extra)
            else:
                log.emit(action=action, outcome="failure", latency_ms=latency, metadata=metadata,
                         error_code=type(error).__name__, error_message=str(error)[:2000], **extra)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    record(started, args, kwargs, exc)
                    raise
                record(started, args, kwargs, None)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                record(started, args, kwargs, exc)
                raise
            record(started, args, kwargs, None)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
