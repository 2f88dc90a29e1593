"""A service that is not Python (Node with amqplib) publishes; sealog stores with the contract's mapping."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from sealog.stores import open_store
from tests.fixtures.rabbitmq import ConsumerProcess, Names, row_counts, wait_for

Consume = Callable[..., ConsumerProcess]

PUBLISH_JS = """
const amqp = require('amqplib');
const [url, exchange, messages] = process.argv.slice(2);
(async () => {
  const conn = await amqp.connect(url);
  const channel = await conn.createConfirmChannel();
  await channel.assertExchange(exchange, 'topic', { durable: true });
  for (const [key, body] of JSON.parse(messages)) {
    channel.publish(exchange, key, Buffer.from(JSON.stringify(body)),
                    { persistent: true, contentType: 'application/json' });
  }
  await channel.waitForConfirms();
  await conn.close();
})().catch((err) => { console.error(err); process.exit(1); });
"""

DOMAIN_EVENT = {
    "event_id": "evt_01HZX-node-1", "event_type": "workspace.member.invite",
    "timestamp": "2024-07-01T09:30:00.123Z", "source_service": "workspace-api",
    "payload": {"organization_id": "org_42", "clerk_user_id": "user_2abc", "ip_address": "198.51.100.7",
                "user_agent": "node-fetch/3", "invitee": "b@example.com", "session_token": "s3cr3t-value"},
}
CLOUD_EVENT = {
    "specversion": "1.0", "id": "0d5c3a8e-2b7c-4c1e-9f0a-3d2e1c0b9a87", "type": "content.publish",
    "source": "urn:service:publisher-node", "time": "2024-07-01T09:31:00Z", "subject": "post-77",
    "tenantid": "org_42", "datacontenttype": "application/json", "data": {"platform": "linkedin"},
}


def test_node_amqplib_messages_are_stored_with_the_contract_mapping(
        consumer: Consume, rabbit_url: str, names: Names, tmp_path: Path, node_amqplib: Path) -> None:
    """A domain event and a CloudEvent from Node become events with the fields DESIGN.md maps."""
    consumer("#")
    script = node_amqplib / "publish.js"
    script.write_text(PUBLISH_JS)
    messages = [["workspace.member.invite", DOMAIN_EVENT], ["content.publish", CLOUD_EVENT]]
    subprocess.run(["node", str(script), rabbit_url, names.exchange, json.dumps(messages)],
                   cwd=node_amqplib, check=True, capture_output=True, timeout=60)
    db = tmp_path / "audit.db"
    wait_for(lambda: row_counts(db)[0] == 2, what="both Node messages in the store")
    store = open_store(f"sqlite:///{db}")
    try:
        invite = store.get("org_42", "evt_01HZX-node-1")
        published = store.get("org_42", str(CLOUD_EVENT["id"]))
    finally:
        store.close()
    assert invite is not None
    assert published is not None
    assert (invite.action, invite.source, invite.occurred_at) == (
        "workspace.member.invite", "workspace-api", "2024-07-01T09:30:00.123000Z")
    assert (invite.actor_type, invite.actor_id) == ("user", "user_2abc")
    assert (invite.ip_address, invite.user_agent) == ("198.51.100.7", "node-fetch/3")
    assert invite.metadata["invitee"] == "b@example.com"
    assert invite.metadata["session_token"] == "[REDACTED]"
    assert (published.action, published.source, published.target_id) == (
        "content.publish", "urn:service:publisher-node", "post-77")
    assert (published.occurred_at, published.metadata) == ("2024-07-01T09:31:00.000000Z", {"platform": "linkedin"})
