"""Issue 13 part 5: scale-out on a real three-node RabbitMQ cluster, a node lost and back while events flow."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from sealog import AuditLog
from tests.fixtures.rabbitcluster import RabbitCluster
from tests.fixtures.rabbitmq import Names, wait_for

from .test_scale_out import TENANTS, assert_exactly_once_and_verified, consumer_process, pg_rows


def replicated(cluster: RabbitCluster, queue: str) -> bool:
    """The queue has a member on every node, all online: losing one node keeps its majority."""
    for row in cluster.queues():
        if row.get("name") == queue:
            everyone = {n.nodename for n in cluster.nodes}
            return set(row.get("members") or []) == everyone and set(row.get("online") or []) == everyone
    return False


@pytest.mark.slow
@pytest.mark.cluster
def test_a_node_stops_and_returns_while_events_flow_through_two_consumers(
        rabbit_cluster: RabbitCluster, pg_url: str, tmp_path: pytest.TempPathFactory) -> None:
    """Quorum queue on three nodes; the publisher and one consumer start on node 0, the other consumer on
    node 1. Node 0 stops: events emitted after that are stored while it is away (publisher and consumer moved
    to the other nodes, the queue kept its majority). Node 0 returns; every event is stored exactly once and
    every chain verifies."""
    cluster, tmp = rabbit_cluster, tmp_path
    tag = uuid.uuid4().hex[:8]
    names = Names(exchange=f"cluster.events.{tag}", queue=f"cluster.q.{tag}")
    quorum = ("--queue-type", "quorum", "--batch-size", "100")
    consumers = [consumer_process(cluster.url_from(n), names, pg_url, tmp, n, *quorum).start() for n in (0, 1)]
    try:
        log = AuditLog(broker=cluster.url, exchange=names.exchange, spool_dir=tmp / "spool")
        ids: list[str] = []
        stop = threading.Event()

        def flow() -> None:  # about 400 events/s, four tenants interleaved
            i = 0
            while not stop.is_set():
                ids.extend(log.emit(tenant_id=TENANTS[j % len(TENANTS)], action="auth.login",
                                    actor=("user", f"u-{j}"), metadata={"j": j}) for j in range(i, i + 20))
                i += 20
                time.sleep(0.05)

        emitter = threading.Thread(target=flow, daemon=True)
        emitter.start()
        try:
            wait_for(lambda: pg_rows(pg_url)[0] >= 1000, timeout=120, what="events flowing through the cluster")
            wait_for(lambda: replicated(cluster, names.queue), timeout=60, what="the quorum queue on all three nodes")
            cluster.stop(0)
            emitted_before_stop = len(ids)
            try:
                wait_for(lambda: pg_rows(pg_url)[0] >= emitted_before_stop + 1000, timeout=120,
                         what="events emitted after node 0 stopped to be stored without it")
            except BaseException:
                print("queues:", cluster.queues(), "\nconsumers:", [c.stats() for c in consumers], "\nlog:", log.stats())
                raise
            assert cluster.nodes[0].process is None  # still away: the other two nodes did it
            wait_for(lambda: consumers[0].stats().get("reconnects", 0) >= 1, timeout=60,
                     what="the consumer of node 0 to reconnect to another node")
            cluster.start(0)
            back = len(ids)
            wait_for(lambda: pg_rows(pg_url)[0] >= back + 1000, timeout=120, what="events after node 0 returned")
            stop.set()
            emitter.join(10)
            assert log.flush(timeout=120), log.stats()
        finally:
            stop.set()
            emitter.join(10)
            log.close()
        wait_for(lambda: pg_rows(pg_url)[0] >= len(ids), timeout=120, what="every event in PostgreSQL")
        time.sleep(1)  # a late redelivery would show as a second row (it must not)
        assert_exactly_once_and_verified(pg_url, ids)
        assert all(c.stats()["stored"] > 0 for c in consumers)
    finally:  # whatever failed: no consumer outlives the test
        for c in consumers:
            c.kill_all()
