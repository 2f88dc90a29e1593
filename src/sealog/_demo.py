"""A realistic burst of audit events, for ``sealog demo`` and the service's demo mode."""

from __future__ import annotations

import random

from ._log import AuditLog

TENANTS = ("acme", "globex")
USERS = ("u-ada", "u-grace", "u-linus", "u-barbara")


def record_demo(log: AuditLog, count: int, seed: int = 7) -> tuple[str, ...]:
    """Emit ``count`` events across the demo tenants; returns the tenants used."""
    rng = random.Random(seed)
    kinds = (_login, _login, _failed_login, _export, _settings, _publish, _publish_failed, _tool_call)
    for number in range(count):
        tenant = TENANTS[number % len(TENANTS)]
        user = rng.choice(USERS)
        rng.choice(kinds)(log, tenant, user, rng, number)
    return TENANTS


def _ip(rng: random.Random) -> str:
    return f"203.0.113.{rng.randint(1, 254)}"


def _login(log: AuditLog, tenant: str, user: str, rng: random.Random, n: int) -> None:
    log.login(tenant, user, ip_address=_ip(rng), user_agent="Mozilla/5.0 (X11; Linux x86_64)",
              method=rng.choice(["password", "sso", "passkey"]), request_id=f"req-{n}")


def _failed_login(log: AuditLog, tenant: str, user: str, rng: random.Random, n: int) -> None:
    log.login(tenant, user, outcome="failure", ip_address=_ip(rng), error_code="BAD_CREDENTIALS",
              error_message="password mismatch for password=hunter2", request_id=f"req-{n}")


def _export(log: AuditLog, tenant: str, user: str, rng: random.Random, n: int) -> None:
    log.data_export(tenant, user, target=("report", f"rpt-{rng.randint(1, 40)}"),
                    export_format="csv", record_count=rng.randint(10, 50_000))


def _settings(log: AuditLog, tenant: str, user: str, rng: random.Random, n: int) -> None:
    before = {"theme": "dark", "mfa": False, "webhook": {"url": "https://hooks.example/a",
                                                         "secret": "whsec_live_abc123"}}
    after = {**before, "mfa": True, "theme": rng.choice(["light", "dark"])}
    log.settings_change(tenant, user, "workspace", before, after)


def _publish(log: AuditLog, tenant: str, user: str, rng: random.Random, n: int) -> None:
    post = f"p-{n}"
    log.event(tenant).action("content.publish").actor("agent", "publisher").target("post", post) \
        .succeeded().with_api_proof({"post_id": f"ig_{rng.randint(10**6, 10**7)}"}) \
        .metadata(platform=rng.choice(["instagram", "linkedin", "x"])).emit()


def _publish_failed(log: AuditLog, tenant: str, user: str, rng: random.Random, n: int) -> None:
    log.event(tenant).action("content.publish").actor("agent", "publisher").target("post", f"p-{n}") \
        .failed("PLATFORM_ERROR", "Rate limit exceeded").emit()


def _tool_call(log: AuditLog, tenant: str, user: str, rng: random.Random, n: int) -> None:
    log.emit(tenant_id=tenant, action="gpt.tool.call", actor=("agent", "assistant"),
             target=("tool", rng.choice(["search", "calendar", "crm.lookup"])),
             latency_ms=round(rng.uniform(5, 900), 3),
             metadata={"arguments": {"query": "q3 revenue", "api_key": "sk_live_123456789012"}})
