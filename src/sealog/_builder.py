"""The fluent builder: one new object per event, so requests never share state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._log import AuditLog


class EventBuilder:
    """Collects fields, then ``emit()``; every method returns the same builder."""

    __slots__ = ("_fields", "_log")

    def __init__(self, log: AuditLog, tenant_id: str | None = None) -> None:
        self._log = log
        self._fields: dict[str, Any] = {} if tenant_id is None else {"tenant_id": tenant_id}

    def _set(self, **fields: Any) -> EventBuilder:
        self._fields.update(fields)
        return self

    def tenant(self, tenant_id: str) -> EventBuilder:
        return self._set(tenant_id=tenant_id)

    def action(self, action: str) -> EventBuilder:
        return self._set(action=action)

    def actor(self, actor_type: str, actor_id: str) -> EventBuilder:
        return self._set(actor_type=actor_type, actor_id=actor_id)

    def target(self, target_type: str, target_id: str) -> EventBuilder:
        return self._set(target_type=target_type, target_id=target_id)

    def outcome(self, outcome: str) -> EventBuilder:
        return self._set(outcome=outcome)

    def succeeded(self) -> EventBuilder:
        return self._set(outcome="success")

    def failed(self, error_code: str | None = None, error_message: str | None = None) -> EventBuilder:
        return self._set(outcome="failure", error_code=error_code, error_message=error_message)

    def partial(self) -> EventBuilder:
        return self._set(outcome="partial")

    def pending(self) -> EventBuilder:
        return self._set(outcome="pending")

    def source(self, source: str) -> EventBuilder:
        return self._set(source=source)

    def request(self, request_id: str | None = None, ip_address: str | None = None,
                user_agent: str | None = None) -> EventBuilder:
        given = {"request_id": request_id, "ip_address": ip_address, "user_agent": user_agent}
        return self._set(**{k: v for k, v in given.items() if v is not None})

    def correlation(self, correlation_id: str, span_id: str | None = None) -> EventBuilder:
        return self._set(correlation_id=correlation_id, span_id=span_id)

    def caused_by(self, parent_event_id: str) -> EventBuilder:
        return self._set(parent_event_id=parent_event_id)

    def latency(self, latency_ms: float) -> EventBuilder:
        return self._set(latency_ms=latency_ms)

    def metadata(self, **values: Any) -> EventBuilder:
        merged = {**self._fields.get("metadata", {}), **values}
        return self._set(metadata=merged)

    def change(self, before: Any, after: Any) -> EventBuilder:
        return self._set(before=before, after=after)

    def with_proof(self, proof_type: str, **proof: Any) -> EventBuilder:
        return self._set(proof={"type": proof_type, **proof})

    def with_api_proof(self, response: Any) -> EventBuilder:
        return self.with_proof("api_response", data=response)

    def with_screenshot_proof(self, url: str, hash: str | None = None) -> EventBuilder:
        extra = {} if hash is None else {"hash": hash}
        return self.with_proof("screenshot", url=url, **extra)

    def with_hash_proof(self, digest: str) -> EventBuilder:
        return self.with_proof("hash", hash=digest)

    def with_url_proof(self, url: str) -> EventBuilder:
        return self.with_proof("url", url=url)

    def emit(self) -> str:
        return self._log.emit(**self._fields)
