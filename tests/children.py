"""Child processes for the durability tests: real processes, real SIGKILLs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

EMITTER = textwrap.dedent('''
    import sys, threading
    from sealog import AuditLog
    url, spool, tenant, count, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    log = AuditLog(url, spool_dir=spool)
    out = sys.stdout
    lock = threading.Lock()

    def work(worker):
        i = 0
        while count < 0 or i < count:
            eid = log.emit(tenant_id=tenant, action="test.burst", actor=("worker", str(worker)),
                           metadata={"i": i})
            with lock:
                out.write(eid + "\\n")
                out.flush()
            i += 1

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers: w.start()
    for w in workers: w.join()
    ok = log.flush(60)
    log.close()
    sys.exit(0 if ok else 5)
''')


def start_emitter(url: str, spool: Path, tenant: str, count: int = -1, threads: int = 1) -> subprocess.Popen[str]:
    """Emit ``count`` events (forever when -1), printing each id after emit returned it."""
    return subprocess.Popen(
        [sys.executable, "-c", EMITTER, url, str(spool), tenant, str(count), str(threads)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def read_ids(process: subprocess.Popen[str], at_least: int) -> list[str]:
    """Read printed ids until ``at_least`` arrived (the child keeps emitting meanwhile)."""
    assert process.stdout is not None
    ids = []
    while len(ids) < at_least:
        line = process.stdout.readline()
        if not line:
            break
        ids.append(line.strip())
    return ids


CRASHING_CONSUMER = textwrap.dedent('''
    """A consumer whose store dies (like a segfault: no exception, no cleanup) on the action crash.now.

    argv: broker exchange queue db stats [delivery limit]. With a limit, the queue is a quorum queue with
    that delivery limit, and the consumer keeps no attempts file of its own (like one restarted on a fresh
    host each time), so only the broker counts its deaths.
    """
    import os, signal, sys
    from pathlib import Path
    from sealog.broker.consumer import Consumer, Settings
    from sealog.stores import open_store

    broker, exchange, queue, db, stats = sys.argv[1:6]
    store = open_store(f"sqlite:///{db}")
    store.migrate()
    real_write = store.write

    def write(events):
        if any(e.action == "crash.now" for e in events):
            os._exit(70)
        return real_write(events)

    store.write = write
    quorum = {}
    if len(sys.argv) > 6:
        quorum = {"queue_type": "quorum", "delivery_limit": int(sys.argv[6]), "batch_delay": 0.05,
                  "attempts_file": Path(stats).with_name(f"attempts-{os.getpid()}.json")}
    settings = Settings(**{"broker": broker, "exchange": exchange, "queue": queue, "bindings": ("#",),
                           "dead_letter": queue + ".dead", "batch_delay": 0.3, "stats_file": Path(stats),
                           "stats_interval": 0.1, **quorum})
    consumer = Consumer(settings, store)
    consumer.connect()
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    consumer.report()
    consumer.run()
''')
