"""The ``SEALOG`` setting, read lazily and re-read when a test overrides it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from django.conf import settings
from django.http import HttpRequest
from django.utils.module_loading import import_string

from sealog import AuditLog, configure, get_default

from .._request import RequestFields

OWN_KEYS: Final = frozenset({"URL", "TENANT", "TRACK", "TRUSTED_PROXIES", "REQUEST_ID_HEADER"})
"""Every other key of SEALOG is an AuditLog option, in upper or lower case (SPOOL_DIR, WRITER, ...)."""

_lock = threading.Lock()
_log: AuditLog | None = None
_fields: RequestFields | None = None
_tenant: tuple[Callable[[HttpRequest], str | None] | None, str | None] | None = None


def options() -> dict[str, Any]:
    value = getattr(settings, "SEALOG", None) or {}
    if not isinstance(value, dict):
        raise TypeError("settings.SEALOG must be a dict")
    return value


def get_log() -> AuditLog:
    """The app's AuditLog: made from SEALOG (and made the module default), else the default one."""
    global _log
    if _log is None:
        with _lock:
            if _log is None:
                given = options()
                extra = {key.lower(): value for key, value in given.items() if key not in OWN_KEYS}
                _log = configure(given.get("URL"), **extra) if "URL" in given or extra else get_default()
    return _log


def request_fields() -> RequestFields:
    global _fields
    if _fields is None:
        given = options()
        _fields = RequestFields(given.get("TRUSTED_PROXIES", ()), given.get("REQUEST_ID_HEADER", "x-request-id"))
    return _fields


def _tenant_setting() -> tuple[Callable[[HttpRequest], str | None] | None, str | None]:
    """TENANT as (function, None) or (None, constant): a dotted path that imports is a function."""
    global _tenant
    if _tenant is None:
        value = options().get("TENANT")
        if callable(value):
            _tenant = (value, None)
        elif isinstance(value, str) and "." in value:
            try:
                found = import_string(value)
            except ImportError:
                found = None
            _tenant = (found, None) if callable(found) else (None, value)
        else:
            _tenant = (None, value)
    return _tenant


def tenant_for(request: HttpRequest | None) -> str | None:
    """The tenant of a request (or the constant); None when only the bound context knows it."""
    function, constant = _tenant_setting()
    if function is None:
        return constant
    return None if request is None else function(request)


def constant_tenant() -> str | None:
    return _tenant_setting()[1]


def tracked_labels() -> list[str]:
    return list(options().get("TRACK", ()))


def reset() -> None:
    """Forget what was read from SEALOG (the AuditLog itself is replaced on next use)."""
    global _log, _fields, _tenant
    with _lock:
        _log = _fields = _tenant = None


def watch_settings() -> None:
    from django.core.signals import setting_changed

    def changed(*, setting: str, **_: Any) -> None:
        if setting == "SEALOG":
            from . import tracking

            reset()
            tracking.install(tracked_labels())

    setting_changed.connect(changed, weak=False, dispatch_uid="sealog.settings")
