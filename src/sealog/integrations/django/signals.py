"""Django's auth signals as audit events: auth.login, auth.logout, and failed auth.login.

They are emitted at once, not on commit: a failed login must stay on record even when the
request's transaction rolls back. The attempted password never reaches the event: only the
username is taken from the credentials.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.http import HttpRequest

from . import conf
from .middleware import request_context


def connect() -> None:
    user_logged_in.connect(logged_in, dispatch_uid="sealog.auth.login")
    user_logged_out.connect(logged_out, dispatch_uid="sealog.auth.logout")
    user_login_failed.connect(login_failed, dispatch_uid="sealog.auth.failed")


def _emit(request: HttpRequest | None, **fields: Any) -> None:
    log = conf.get_log()
    tenant = conf.tenant_for(request)
    if tenant is not None:
        fields["tenant_id"] = tenant
    with _request_bound(request, log):
        log.emit(**fields)


def _request_bound(request: HttpRequest | None, log: Any) -> AbstractContextManager[Any]:
    """The request's context when the middleware did not bind it (e.g. ``Client.login``)."""
    if request is None or hasattr(request, "sealog_request_id") or not hasattr(request, "META"):
        return nullcontext()
    return log.context(**request_context(request, None))  # type: ignore[no-any-return]


def logged_in(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    _emit(request, action="auth.login", actor=("user", str(user.pk)), target=("user", str(user.pk)))


def logged_out(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    if user is None:  # logging out an anonymous session changes nothing
        return
    _emit(request, action="auth.logout", actor=("user", str(user.pk)), target=("user", str(user.pk)))


def login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any) -> None:
    field: str = getattr(get_user_model(), "USERNAME_FIELD", "username")
    username = credentials.get(field, credentials.get("username"))
    metadata = {"username": str(username)} if username is not None else {}
    _emit(request, action="auth.login", outcome="failure", metadata=metadata)
