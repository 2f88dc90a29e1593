"""A minimal Flask app audited by sealog. Run: ``flask --app app run`` in this directory."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

import sealog
from sealog.integrations.logging import AuditHandler
from sealog.integrations.wsgi import AuditMiddleware

TENANT = "demo"
logger = logging.getLogger("invoices")
logger.setLevel(logging.INFO)
logger.addHandler(AuditHandler())  # records with extra={"audit": {...}} become events


def current_user(environ: dict[str, Any]) -> tuple[str, str] | None:
    """Demo only: a real app takes the user from its authentication, not a header."""
    user = environ.get("HTTP_X_USER")
    return ("user", user) if user else None


app = Flask(__name__)
app.wsgi_app = AuditMiddleware(app.wsgi_app, tenant=lambda environ: TENANT,  # type: ignore[method-assign]
                               actor=current_user, trusted_proxies=["127.0.0.1"])


@app.post("/invoices/<invoice_id>/approve")
def approve(invoice_id: str) -> dict[str, str]:
    logger.info("invoice %s approved", invoice_id,
                extra={"audit": {"action": "invoice.approve", "target": ("invoice", invoice_id)}})
    return {"approved": invoice_id}


@app.get("/audit")
def audit() -> list[dict[str, Any]]:
    sealog.get_default().flush(2)
    return [event.to_dict() for event in sealog.get_default().query(TENANT, limit=20).events]
