"""sealog: audit logging that is never lost, tamper-evident and cheap to emit."""

from __future__ import annotations

from .builder import EventBuilder
from .chain import Problem, VerifyReport
from .default import configure, emit, event, get_default
from .errors import InvalidEvent, InvalidQuery, SealogError, SpoolFull, StoreUnavailable
from .event import Event
from .log import AuditLog
from .redact import REDACTED, Redactor
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
