"""The module-level default AuditLog, for code that does not pass one around."""

from __future__ import annotations

import threading
from typing import Any

from ._builder import EventBuilder
from ._log import AuditLog

_default: AuditLog | None = None
_lock = threading.Lock()


def configure(url: str | None = None, **options: Any) -> AuditLog:
    """Replace the default AuditLog (closing the previous one) and return it."""
    global _default
    with _lock:
        previous, _default = _default, AuditLog(url, **options)
    if previous is not None:
        previous.close()
    return _default


def get_default() -> AuditLog:
    """The default AuditLog, made from the environment on first use."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = AuditLog()
    return _default


def emit(**fields: Any) -> str:
    return get_default().emit(**fields)


def event(tenant_id: str | None = None) -> EventBuilder:
    return get_default().event(tenant_id)
