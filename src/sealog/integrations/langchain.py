"""LangChain: each tool an agent runs becomes one ``agent.tool.call`` event.

Pass ``AuditCallbackHandler(log, tenant="acme")`` in ``callbacks=[...]`` (of the agent, the
chain or ``tool.invoke(..., config={"callbacks": [...]})``). The event has the tool as its
target, LangChain's run id as ``request_id`` (the parent run id in ``metadata.parent_run_id``,
so the agent's steps can be grouped), the arguments (redacted by emit), the SHA-256 of the
RFC 8785 encoding of the output, the latency, and outcome ``failure`` with the error class
when the tool raised or returned an error message.

A callback must never break the agent: a failure to record is logged on the ``sealog``
logger (and counted by the logging setup the application has), never raised.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from sealog import AuditLog, get_default
from sealog._canonical import canonical_value
from sealog._errors import InvalidEvent

from ._request import Pair
from ._values import jsonable, scrub, secrets_in

__all__ = ["AuditCallbackHandler"]

_report = logging.getLogger("sealog")
Results = Literal["hash", "none", "full"]
ACTION: Final = "agent.tool.call"
MAX_ERROR_CHARS: Final = 1024
MAX_PENDING: Final = 10_000
"""Runs started but never ended (a crashed executor) are forgotten past this many."""


class AuditCallbackHandler(BaseCallbackHandler):
    """Records every tool run; ``tenant`` is a string or None (the bound context's tenant).

    ``actor`` is a ``(type, id)`` pair, or ``actor(metadata) -> pair | None`` called with the
    run's metadata (what ``config={"metadata": {...}}`` gave), when the tool starts.
    """

    raise_error = False
    run_inline = True  # called in the agent's own task: the bound context (tenant, request) applies

    def __init__(self, log: AuditLog | None = None, *, tenant: str | None = None,
                 actor: Pair | Callable[[Mapping[str, Any]], Pair | None] | None = None,
                 results: Results = "hash", source: str | None = None) -> None:
        if results not in ("hash", "none", "full"):
            raise ValueError(f"results must be 'hash', 'none' or 'full', not {results!r}")
        self.log = log
        self.tenant = tenant
        self.actor = actor
        self.results = results
        self.source = source
        self._runs: dict[UUID, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
                      **kwargs: Any) -> None:
        try:
            name = (serialized or {}).get("name") or kwargs.get("name") or "tool"
            fields: dict[str, Any] = {
                "action": ACTION, "target": ("tool", str(name)), "request_id": str(run_id),
                "metadata": {"arguments": jsonable(inputs if inputs is not None else input_str)},
            }
            if parent_run_id is not None:
                fields["metadata"]["parent_run_id"] = str(parent_run_id)
            if self.tenant is not None:
                fields["tenant_id"] = self.tenant
            if self.source is not None:
                fields["source"] = self.source
            actor = self.actor(metadata or {}) if callable(self.actor) else self.actor
            if actor is not None:
                fields["actor"] = actor
            with self._lock:
                if len(self._runs) >= MAX_PENDING:
                    self._runs.pop(next(iter(self._runs)))
                self._runs[run_id] = (time.perf_counter(), fields)
        except Exception as exc:
            _report.error("audit of tool run %s failed at its start: %s: %s", run_id, type(exc).__name__, exc)

    def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                    **kwargs: Any) -> None:
        started = self._take(run_id)
        if started is None:
            return
        fields = started[1]
        try:
            content = getattr(output, "content", output)  # a ToolMessage, or what the tool returned
            value = jsonable(content)
            if self.results != "none":
                fields["metadata"]["result_sha256"] = hashlib.sha256(canonical_value(value)).hexdigest()
                if self.results == "full":
                    fields["metadata"]["result"] = self._scrub(fields, value)
            if getattr(output, "status", None) == "error":  # handle_tool_error turned a raise into a message
                fields["outcome"] = "failure"
                fields["error_code"] = "tool_error"
                if isinstance(content, str) and content:
                    fields["error_message"] = self._scrub(fields, content[:MAX_ERROR_CHARS])
        except Exception as exc:
            fields["metadata"]["result_error"] = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        self._emit(started[0], fields)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None,
                      **kwargs: Any) -> None:
        started = self._take(run_id)
        if started is None:
            return
        fields = started[1]
        fields["outcome"] = "failure"
        fields["error_code"] = type(error).__name__
        try:
            if message := str(error):
                fields["error_message"] = self._scrub(fields, message[:MAX_ERROR_CHARS])
        except Exception as exc:
            fields["error_message"] = f"(the error's text could not be read: {type(exc).__name__})"
        self._emit(started[0], fields)

    def _scrub(self, fields: dict[str, Any], value: Any) -> Any:
        """Hide in ``value`` what the redactor hides in the arguments: a tool's error may echo them."""
        secret_key = (self.log or get_default()).redactor.secret_key
        return scrub(value, secrets_in(fields["metadata"]["arguments"], secret_key))

    def _take(self, run_id: UUID) -> tuple[float, dict[str, Any]] | None:
        with self._lock:
            return self._runs.pop(run_id, None)

    def _emit(self, started: float, fields: dict[str, Any]) -> None:
        fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        try:
            log = self.log or get_default()
            try:
                log.emit(**fields)
            except InvalidEvent as exc:
                if exc.field != "event":
                    raise
                for key in ("arguments", "result"):  # over the size limit: keep the event, not the bulk
                    if key in fields["metadata"]:
                        fields["metadata"][key] = None
                        fields["metadata"][f"{key}_omitted"] = "over the event size limit"
                log.emit(**fields)
        except Exception as exc:  # never into the agent: a lost audit event is logged, loudly
            _report.error("audit event %s for %s was not recorded: %s: %s", fields["action"], fields["target"],
                          type(exc).__name__, exc)
