"""A minimal FastAPI app audited by sealog. Run: ``uvicorn app:app`` in this directory."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

import sealog
from sealog.integrations.asgi import AuditMiddleware, Scope

TENANT = "demo"


def current_user(scope: Scope) -> tuple[str, str] | None:
    """Demo only: a real app takes the user from its authentication, not a header."""
    user = dict(scope["headers"]).get(b"x-user")
    return ("user", user.decode()) if user else None


app = FastAPI(title="sealog FastAPI example")
app.add_middleware(AuditMiddleware, tenant=lambda scope: TENANT, actor=current_user,
                   trusted_proxies=["127.0.0.1"])  # log=None: sealog's default, from SEALOG_URL


@app.post("/documents/{doc_id}/publish")
def publish(doc_id: str) -> dict[str, str]:
    event_id = sealog.emit(action="document.publish", target=("document", doc_id))
    return {"event_id": event_id}


@app.get("/audit")
def audit() -> list[dict[str, Any]]:
    sealog.get_default().flush(2)
    return [event.to_dict() for event in sealog.get_default().query(TENANT, limit=20).events]
