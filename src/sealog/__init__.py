"""sealog: audit logging that is never lost, tamper-evident and cheap to emit."""

from __future__ import annotations

from ._builder import EventBuilder
from ._chain import Problem, VerifyReport
from ._default import configure, emit, event, get_default
from ._errors import InvalidEvent, InvalidQuery, SealogError, SpoolFull, StoreUnavailable
from ._event import Event
from ._log import AuditLog
from ._redact import REDACTED, Redactor
from .stores import Page, Store

__version__ = "0.1.0"

__all__ = [
    "REDACTED",
    "AuditLog",
    "Event",
    "EventBuilder",
    "InvalidEvent",
    "InvalidQuery",
    "Page",
    "Problem",
    "Redactor",
    "SealogError",
    "SpoolFull",
    "Store",
    "StoreUnavailable",
    "VerifyReport",
    "__version__",
    "configure",
    "emit",
    "event",
    "get_default",
]
