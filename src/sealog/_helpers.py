"""Named helpers for the events every service records, so their shape is the same everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._redact import REDACTED

if TYPE_CHECKING:
    from ._log import AuditLog


def _merge(metadata: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    return {**(metadata or {}), **{k: v for k, v in extra.items() if v is not None}}


def login(log: AuditLog, tenant_id: str, user_id: str, *, outcome: str = "success",
          method: str | None = None, metadata: dict[str, Any] | None = None, **fields: Any) -> str:
    """``auth.login`` by a user; a failed attempt is ``outcome="failure"``."""
    return log.emit(tenant_id=tenant_id, action="auth.login", actor=("user", user_id),
                    outcome=outcome, metadata=_merge(metadata, method=method), **fields)


def logout(log: AuditLog, tenant_id: str, user_id: str, *, reason: str | None = None,
           metadata: dict[str, Any] | None = None, **fields: Any) -> str:
    return log.emit(tenant_id=tenant_id, action="auth.logout", actor=("user", user_id),
                    metadata=_merge(metadata, reason=reason), **fields)


def data_export(log: AuditLog, tenant_id: str, actor_id: str, *, target: tuple[str, str] | None = None,
                export_format: str | None = None, record_count: int | None = None,
                actor_type: str = "user", metadata: dict[str, Any] | None = None,
                **fields: Any) -> str:
    """``data.export``: who took which data out, in what form, how much of it."""
    return log.emit(tenant_id=tenant_id, action="data.export", actor=(actor_type, actor_id),
                    target=target, metadata=_merge(metadata, format=export_format,
                                                   record_count=record_count), **fields)


def data_deletion(log: AuditLog, tenant_id: str, actor_id: str, *,
                  target: tuple[str, str] | None = None, record_count: int | None = None,
                  reason: str | None = None, actor_type: str = "user",
                  metadata: dict[str, Any] | None = None, **fields: Any) -> str:
    return log.emit(tenant_id=tenant_id, action="data.deletion", actor=(actor_type, actor_id),
                    target=target, metadata=_merge(metadata, record_count=record_count,
                                                   reason=reason), **fields)


def settings_change(log: AuditLog, tenant_id: str, actor_id: str, setting: str, before: Any,
                    after: Any, *, actor_type: str = "user", **fields: Any) -> str:
    """``settings.change`` with the previous and new value, redacted like everything else.

    A secret-named setting (``smtp_password``) keeps neither value: only that it changed.
    """
    if log.redactor.secret_key(setting):
        before = None if before is None else REDACTED
        after = None if after is None else REDACTED
    return log.emit(tenant_id=tenant_id, action="settings.change", actor=(actor_type, actor_id),
                    target=("setting", setting), before=before, after=after, **fields)
