"""sealog.integrations.langchain: tool runs become agent.tool.call events, and the handler never breaks the agent."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import pytest
import rfc8785
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import ToolException, tool

from sealog import AuditLog
from sealog.integrations.langchain import AuditCallbackHandler

from .conftest import stored

SECRET = "s3cr3t-Hunter2-0987"


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def transfer(account: str, api_key: str) -> str:
    """Move money; fails, echoing its arguments as careless tools do."""
    raise ValueError(f"bank refused {account} with key {api_key}")


@tool
async def lookup(i: int) -> str:
    """An async tool, to run many at once."""
    await asyncio.sleep(0.001 * (i % 3))
    return f"row {i}"


def sha256_jcs(value: Any) -> str:
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()


def test_a_tool_run_is_one_event_with_run_ids_arguments_and_result_hash(log: AuditLog) -> None:
    """Target the tool, request_id the run id, parent_run_id the calling chain's, the output's JCS hash, latency."""
    handler = AuditCallbackHandler(log, tenant="acme", actor=("user", "u-1"), source="agent-svc")
    chain_run, tool_run = uuid.uuid4(), uuid.uuid4()

    def step(x: dict[str, int], config: RunnableConfig) -> int:
        result: int = add.invoke(x, {**config, "run_id": tool_run})
        return result

    assert RunnableLambda(step).invoke({"a": 2, "b": 3}, {"callbacks": [handler], "run_id": chain_run}) == 5
    [event] = stored(log)
    assert (event.action, event.target_type, event.target_id, event.outcome) == ("agent.tool.call", "tool", "add", "success")
    assert (event.request_id, event.actor_type, event.actor_id, event.source) == (str(tool_run), "user", "u-1", "agent-svc")
    assert event.metadata == {"arguments": {"a": 2, "b": 3}, "parent_run_id": str(chain_run),
                              "result_sha256": sha256_jcs(5)}
    assert event.latency_ms is not None
    assert event.latency_ms >= 0


def test_a_raising_tool_is_a_failure_and_its_error_reaches_the_agent_unchanged(log: AuditLog) -> None:
    """on_tool_error: error_code the class, the message without the secret argument; the agent still sees the raise."""
    handler = AuditCallbackHandler(log, tenant="acme")
    with pytest.raises(ValueError, match=f"with key {SECRET}"):
        transfer.invoke({"account": "acc-9", "api_key": SECRET}, {"callbacks": [handler]})
    [event] = stored(log)
    assert (event.outcome, event.error_code) == ("failure", "ValueError")
    assert event.error_message == "bank refused acc-9 with key [REDACTED]"
    assert event.metadata["arguments"] == {"account": "acc-9", "api_key": "[REDACTED]"}
    assert SECRET not in repr(event.to_dict())


def test_an_error_tool_message_is_a_failure(log: AuditLog) -> None:
    """handle_tool_error turns a raise into a ToolMessage with status error: recorded as failure tool_error."""

    @tool
    def flaky(x: str) -> str:
        """Always fails softly."""
        raise ToolException(f"upstream said no to {x}")

    flaky.handle_tool_error = True
    handler = AuditCallbackHandler(log, tenant="acme")
    message = flaky.invoke({"type": "tool_call", "id": "call-1", "name": "flaky", "args": {"x": "y"}},
                           {"callbacks": [handler]})
    assert isinstance(message, ToolMessage)
    assert message.status == "error"
    [event] = stored(log)
    assert (event.outcome, event.error_code, event.error_message) == ("failure", "tool_error", "upstream said no to y")
    assert event.metadata["result_sha256"] == sha256_jcs("upstream said no to y")


def test_concurrent_async_runs_keep_their_own_run_ids_and_the_bound_tenant(log: AuditLog) -> None:
    """20 ainvoke at once: each event's request_id is its own run id; log.context's tenant applies (run inline)."""
    handler = AuditCallbackHandler(log)
    runs = [uuid.uuid4() for _ in range(20)]

    async def run() -> list[Any]:
        with log.context(tenant_id="globex"):
            return await asyncio.gather(*(lookup.ainvoke({"i": i}, {"callbacks": [handler], "run_id": runs[i]})
                                          for i in range(20)))

    assert asyncio.run(run()) == [f"row {i}" for i in range(20)]
    events = stored(log, "globex")
    assert len(events) == 20
    for event in events:
        i = event.metadata["arguments"]["i"]
        assert event.request_id == str(runs[i])
        assert event.metadata["result_sha256"] == sha256_jcs(f"row {i}")


def test_results_none_and_full_and_an_actor_from_the_runs_metadata(log: AuditLog) -> None:
    """results="none" keeps no hash; "full" keeps the output; actor(metadata) reads config's metadata."""
    none = AuditCallbackHandler(log, tenant="acme", results="none")
    full = AuditCallbackHandler(log, tenant="globex", results="full",
                                actor=lambda meta: ("user", meta["user_id"]) if "user_id" in meta else None)
    add.invoke({"a": 1, "b": 1}, {"callbacks": [none]})
    add.invoke({"a": 1, "b": 2}, {"callbacks": [full], "metadata": {"user_id": "u-9"}})
    [kept_none] = stored(log, "acme")
    [kept_full] = stored(log, "globex")
    assert kept_none.metadata == {"arguments": {"a": 1, "b": 1}}
    assert kept_full.metadata == {"arguments": {"a": 1, "b": 2}, "result": 3, "result_sha256": sha256_jcs(3)}
    assert (kept_full.actor_type, kept_full.actor_id) == ("user", "u-9")
    with pytest.raises(ValueError, match="results must be"):
        AuditCallbackHandler(log, results="some")  # type: ignore[arg-type]


@pytest.mark.allow_sealog_errors
def test_the_handler_never_raises_into_the_agent(log: AuditLog, caplog: pytest.LogCaptureFixture) -> None:
    """No tenant anywhere, or a closed log: the tool's result still comes back; the loss is logged by name."""
    no_tenant = AuditCallbackHandler(log)
    assert add.invoke({"a": 1, "b": 1}, {"callbacks": [no_tenant]}) == 2
    closed = AuditLog(log.url, spool_dir=log.spool.directory.parent / "closed-spool", writer="thread")
    closed.close()
    assert add.invoke({"a": 1, "b": 2}, {"callbacks": [AuditCallbackHandler(closed, tenant="acme")]}) == 3
    lost = [r.getMessage() for r in caplog.records if r.name == "sealog" and "agent.tool.call" in r.getMessage()]
    assert len(lost) == 2
    assert "tenant_id" in lost[0]
    assert "closed" in lost[1]


def test_an_oversized_argument_keeps_the_event_without_it(log: AuditLog) -> None:
    """Arguments past the 64 KiB event limit are dropped, with a note; the event and its result hash stay."""
    handler = AuditCallbackHandler(log, tenant="acme")

    @tool
    def store_blob(blob: str) -> str:
        """Stores a blob."""
        return "ok"

    assert store_blob.invoke({"blob": "x" * 100_000}, {"callbacks": [handler]}) == "ok"
    assert add.invoke({"a": 0, "b": 0}, {"callbacks": [handler]}) == 0
    blob, small = stored(log)
    assert blob.metadata == {"arguments": None, "arguments_omitted": "over the event size limit",
                             "result_sha256": sha256_jcs("ok")}
    assert small.metadata["arguments"] == {"a": 0, "b": 0}
