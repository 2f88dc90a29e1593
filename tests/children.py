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
