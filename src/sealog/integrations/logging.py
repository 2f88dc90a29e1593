"""A logging handler that turns ``extra={"audit": {...}}`` into an audit event.

Code that already logs can audit without a new dependency in every module: the record's
``audit`` dict is passed to ``log.emit(**audit)``. A bad dict never raises into the code that
logged it (logging must not break the caller); it is reported on the ``sealog`` logger as an
ERROR, because an audit event was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sealog import AuditLog, get_default

_report = logging.getLogger("sealog")


class AuditHandler(logging.Handler):
    """Emits one audit event per record that carries ``extra={"audit": {...}}``; ignores the rest."""

    def __init__(self, log: AuditLog | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        audit = record.__dict__.get("audit")
        if audit is None:
            return
        try:
            if not isinstance(audit, Mapping) or not all(isinstance(key, str) for key in audit):
                raise TypeError(f"extra['audit'] must be a dict of emit() arguments, not {type(audit).__name__}")
            (self.log or get_default()).emit(**audit)
        except Exception as exc:  # never into the caller: it only logged something
            _report.error("audit event from the log record at %s:%s was not recorded: %s: %s",
                          record.pathname, record.lineno, type(exc).__name__, exc)
