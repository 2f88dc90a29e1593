"""sealog: audit logging that is never lost, tamper-evident and cheap to emit."""

from __future__ import annotations

from importlib import metadata as _metadata

from ._builder import EventBuilder
from ._chain import Problem, VerifyReport
from ._default import configure, emit, event, get_default
from ._errors import EventRejected, InvalidEvent, InvalidQuery, SealogError, SpoolFull, StoreUnavailable
from ._event import Event
from ._log import AuditLog
from ._redact import REDACTED, Finding, Redactor
from .stores import ChainHead, Page, Query, Store

try:
    __version__ = _metadata.version("sealog")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "REDACTED",
    "AuditLog",
    "ChainHead",
    "Event",
    "EventBuilder",
    "EventRejected",
    "Finding",
    "InvalidEvent",
    "InvalidQuery",
    "Page",
    "Problem",
    "Query",
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
