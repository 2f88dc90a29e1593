"""Signed checkpoints end to end: keys, signing policy (on demand and automatic), proofs, receipts, and
the attacks a hash chain alone misses, each caught by ``verify --checkpoint`` and ``verify-export``
naming the tenant, while a healthy log passes as events keep arriving. Also README's standalone
verifier (hashlib, rfc8785, cryptography; no sealog) against a real export.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import rfc8785
from click.testing import CliRunner, Result

from sealog import AuditLog
from sealog._checkpoints import Checkpoints, NoCheckpoint, TreeRewritten
from sealog._cli import main
from sealog._merkle import leaf_hash, verify_consistency, verify_inclusion
from sealog._note import Signer, Verifier, generate_key, open_checkpoint, sign
from sealog.stores import open_store
from sealog.stores.base import TreeStore

ROOT = Path(__file__).resolve().parent.parent
SEAL = ("seq", "prev_hash", "hash", "recorded_at")


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def content_bytes(event: dict[str, Any]) -> bytes:
    return rfc8785.dumps({k: v for k, v in event.items() if k not in SEAL})


@dataclass
class Keys:
    signer_path: Path
    verifier: str

    @property
    def signer(self) -> Signer:
        return Signer.from_text(self.signer_path.read_text())


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    result = cli("keygen", "--name", "audit.example.com", "-o", str(tmp_path / "signer.key"))
    assert result.exit_code == 0, result.output
    return Keys(tmp_path / "signer.key", result.stdout.strip())


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a condition a background thread makes true (the signing thread has no event to await)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def emit(log: AuditLog, tenant: str, count: int, start: int = 0) -> list[str]:
    ids = [log.emit(tenant_id=tenant, action="tool.call", actor=("agent", "a-1"), latency_ms=i / 4,
                    metadata={"i": i, "ratio": i / 3}) for i in range(start, start + count)]
    assert log.flush(10)
    return ids


# -- keys and signing policy -------------------------------------------------------------------


def test_keygen_writes_a_private_key_file_and_prints_the_verifier_key(keys: Keys) -> None:
    """The signer key file is mode 0600 and matches the printed verifier key; an existing file is kept."""
    assert stat.S_IMODE(keys.signer_path.stat().st_mode) == 0o600
    assert keys.signer.verifier() == Verifier.from_text(keys.verifier)
    assert keys.verifier.startswith("audit.example.com+")
    before = keys.signer_path.read_bytes()
    again = cli("keygen", "--name", "other", "-o", str(keys.signer_path))
    assert again.exit_code == 2
    assert "exists" in again.stderr
    assert keys.signer_path.read_bytes() == before


def test_checkpoint_signs_the_tree_and_only_again_when_it_grew(db_url: str, tmp_path: Path, keys: Keys) -> None:
    """log.checkpoint signs origin sealog/<tenant>, the size and the RFC 6962 root; unchanged tree: same note."""
    with AuditLog(db_url, spool_dir=tmp_path / "spool", signing_key=keys.signer_path, checkpoint_every=3600) as log:
        emit(log, "acme", 5)
        first = log.checkpoint("acme")
        parsed = open_checkpoint(first, [Verifier.from_text(keys.verifier)])
        leaves = [leaf_hash(content_bytes(e.to_dict())) for e in log.iter_events("acme")]
        assert (parsed.origin, parsed.size) == ("sealog/acme", 5)
        assert log.checkpoint("acme") == first
        emit(log, "acme", 3, start=5)
        second = open_checkpoint(log.checkpoint("acme"), [Verifier.from_text(keys.verifier)])
        assert second.size == 8
        consistency = log.consistency_proof("acme", 5, 8)
        assert (consistency["first"], consistency["second"]) == (5, 8)
        verify_consistency(5, 8, [base64.b64decode(h) for h in consistency["hashes"]], parsed.root, second.root)
        ids = [e.event_id for e in log.iter_events("acme")]
        proof = log.inclusion_proof("acme", ids[2])
        assert (proof["leaf_index"], proof["tree_size"]) == (2, 8)
        verify_inclusion(leaves[2], 2, 8, [base64.b64decode(h) for h in proof["hashes"]], second.root)
        assert log.inclusion_proof("acme", ids[2], tree_size=5)["tree_size"] == 5


def test_without_a_key_the_latest_checkpoint_is_served_and_none_is_signed(db_url: str, tmp_path: Path,
                                                                          keys: Keys) -> None:
    """No key: NoCheckpoint until a keyed process signs; then that one, even after the tree grew."""
    with AuditLog(db_url, spool_dir=tmp_path / "spool") as log:
        emit(log, "acme", 3)
        with pytest.raises(NoCheckpoint):
            log.checkpoint("acme")
        with pytest.raises(NoCheckpoint):
            log.inclusion_proof("acme", next(iter(log.iter_events("acme"))).event_id)
        signed = cli("checkpoint", "--url", db_url, "--tenant", "acme", "--signing-key", str(keys.signer_path))
        assert signed.exit_code == 0, signed.output
        emit(log, "acme", 2, start=3)
        assert log.checkpoint("acme") == signed.stdout
        assert open_checkpoint(signed.stdout, [Verifier.from_text(keys.verifier)]).size == 3


def test_log_name_comes_from_the_environment(db_url: str, tmp_path: Path, keys: Keys,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """SEALOG_LOG_NAME and SEALOG_SIGNING_KEY configure the origin and the key."""
    monkeypatch.setenv("SEALOG_LOG_NAME", "audit.example.com/prod")
    monkeypatch.setenv("SEALOG_SIGNING_KEY", str(keys.signer_path))
    with AuditLog(db_url, spool_dir=tmp_path / "spool") as log:
        emit(log, "acme", 1)
        assert open_checkpoint(log.checkpoint("acme"), [keys.signer.verifier()]).origin == "audit.example.com/prod/acme"


def test_automatic_checkpoints_sign_every_tenant_that_grew(db_url: str, tmp_path: Path, keys: Keys) -> None:
    """With a key, a thread signs each grown tenant every checkpoint_every seconds, without being asked."""
    store = open_store(db_url)
    assert isinstance(store, TreeStore)
    with AuditLog(db_url, spool_dir=tmp_path / "spool", signing_key=keys.signer_path, checkpoint_every=0.2) as log:
        emit(log, "acme", 4)
        emit(log, "globex", 2)

        def signed(tenant: str, size: int) -> Callable[[], bool]:
            return lambda: (c := store.latest_checkpoint(tenant)) is not None and c.tree_size == size

        assert wait_for(signed("acme", 4))
        assert wait_for(signed("globex", 2))
        emit(log, "acme", 3, start=4)
        assert wait_for(signed("acme", 7))
    latest = store.latest_checkpoint("acme")
    assert latest is not None
    assert open_checkpoint(latest.note, [keys.signer.verifier()]).size == 7
    store.close()


@pytest.mark.allow_sealog_errors
def test_a_cut_off_tree_is_never_signed(db_url: str, tmp_path: Path, keys: Keys) -> None:
    """Events cut off below the latest checkpoint (heads fixed too): signing refuses (TreeRewritten)."""
    with AuditLog(db_url, spool_dir=tmp_path / "spool", signing_key=keys.signer_path, checkpoint_every=3600) as log:
        emit(log, "acme", 6)
        log.checkpoint("acme")
        truncate_sqlite(db_url, "acme", keep=4)
        with pytest.raises(TreeRewritten, match=r"'acme'.*cut off"):
            log.checkpoint("acme")
    refused = cli("checkpoint", "--url", db_url, "--signing-key", str(keys.signer_path))
    assert refused.exit_code == 1
    assert "tenant 'acme': the tree has 4 events, fewer than the 6 of its latest checkpoint" in refused.stderr


# -- receipts ----------------------------------------------------------------------------------


def test_receipt_verifies_offline_and_a_changed_one_does_not(db_url: str, tmp_path: Path, keys: Keys) -> None:
    """log.receipt gives a C2SP tlog-proof; `sealog verify-receipt` prints the event, or exits 1 if altered."""
    with AuditLog(db_url, spool_dir=tmp_path / "spool", signing_key=keys.signer_path, checkpoint_every=3600) as log:
        ids = emit(log, "acme", 300)
        receipt = log.receipt("acme", ids[260])
    assert receipt is not None
    assert receipt.startswith("c2sp.org/tlog-proof@v1\nextra ")
    assert "\nindex 260\n" in receipt
    path = tmp_path / "receipt.txt"
    path.write_text(receipt)
    ok = cli("verify-receipt", str(path), "--verifier-key", keys.verifier)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["event_id"] == ids[260]
    extra = re.search(r"^extra (.*)$", receipt, re.M)
    assert extra is not None
    event = json.loads(base64.b64decode(extra.group(1)))
    event["outcome"] = "failure"
    forged = receipt.replace(extra.group(1), base64.b64encode(rfc8785.dumps(event)).decode())
    path.write_text(forged)
    bad = cli("verify-receipt", str(path), "--verifier-key", keys.verifier)
    assert bad.exit_code == 1
    assert "not in the checkpoint's tree" in bad.stderr


def test_receipt_without_a_covering_checkpoint_or_key(db_url: str, tmp_path: Path, keys: Keys) -> None:
    """No key and no checkpoint covering the event: None, and the CLI exits 1 saying so; with a key it signs."""
    with AuditLog(db_url, spool_dir=tmp_path / "spool") as log:
        ids = emit(log, "acme", 2)
        assert log.receipt("acme", ids[1]) is None
    refused = cli("receipt", "--url", db_url, "--tenant", "acme", "--event", ids[1])
    assert refused.exit_code == 1
    assert "no signed checkpoint" in refused.stderr
    out = tmp_path / "r.txt"
    made = cli("receipt", "--url", db_url, "--tenant", "acme", "--event", ids[1], "-o", str(out),
               env={"SEALOG_SIGNING_KEY": str(keys.signer_path)})
    assert made.exit_code == 0, made.output
    assert cli("verify-receipt", str(out), "--verifier-key", keys.verifier).exit_code == 0


# -- attacks -----------------------------------------------------------------------------------


Execute = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def raw(url: str) -> Iterator[Execute]:
    """The attacker's connection: write access, append-only triggers out of the way."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        for trigger in ("events_no_update", "events_no_delete", "tree_nodes_no_delete"):
            conn.execute(f"DROP TRIGGER {trigger}")
        yield lambda sql, params: conn.execute(sql, params).fetchall()
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        for table in ("sealog_events", "sealog_tree_nodes"):
            pg.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")

        def run(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            sql = re.sub(r"\b(events|chain_heads|tree_nodes)\b", r"sealog_\1", sql.replace("?", "%s"))
            cursor = pg.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

        yield run


def truncate_sqlite(url: str, tenant: str, keep: int) -> None:
    for execute in raw(url):
        cut_tail(execute, tenant, keep)


def cut_tail(execute: Execute, tenant: str, keep: int) -> None:
    """Delete the newest events and set the head to the new last one, so a chain check passes."""
    execute("DELETE FROM events WHERE tenant_id = ? AND seq > ?", (tenant, keep))
    [(digest,)] = execute("SELECT hash FROM events WHERE tenant_id = ? AND seq = ?", (tenant, keep))
    execute("UPDATE chain_heads SET seq = ?, hash = ? WHERE tenant_id = ?", (keep, digest, tenant))


def rehash_chain(execute: Execute, tenant: str, url: str, changed_seq: int) -> None:
    """Change one old event and re-hash it and every later one, heads included: the chain verifies."""
    store = open_store(url)
    events = [e.to_dict() for e in store.iter_events(tenant)]
    store.close()
    events[changed_seq - 1]["metadata"] = {"rewritten": True}
    prev = bytes(32)
    for event in events:
        digest = hashlib.sha256(prev + content_bytes(event)).digest()
        meta = json.dumps(event["metadata"], separators=(",", ":"), sort_keys=True)
        execute("UPDATE events SET metadata = ?, prev_hash = ?, hash = ? WHERE tenant_id = ? AND seq = ?",
                (meta, prev.hex(), digest.hex(), tenant, event["seq"]))
        prev = digest
    execute("UPDATE chain_heads SET hash = ? WHERE tenant_id = ?", (prev.hex(), tenant))


@dataclass
class Signed:
    url: str
    keys: Keys
    checkpoint: Path
    export: Path

    def verify(self, *extra: str, checkpoint: Path | None = None) -> Result:
        return cli("verify", "--url", self.url, "--checkpoint", str(checkpoint or self.checkpoint),
                   "--verifier-key", self.keys.verifier, *extra)

    def verify_export(self, export: Path | None = None, checkpoint: Path | None = None) -> Result:
        return cli("verify-export", str(export or self.export), "--checkpoint", str(checkpoint or self.checkpoint),
                   "--verifier-key", str(self.keys.signer_path.with_name("verifier.pub")))


@pytest.fixture(params=["sqlite", "postgres"])
def signed(request: pytest.FixtureRequest, tmp_path: Path, keys: Keys) -> Signed:
    """acme (600 events, over two tiles) and globex in a store, acme's signed checkpoint and its export."""
    url = str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))
    (tmp_path / "verifier.pub").write_text(keys.verifier + "\n")
    with AuditLog(url, spool_dir=tmp_path / "spool", writer="thread") as log:
        for start in range(0, 600, 200):
            emit(log, "acme", 200, start)
        emit(log, "globex", 10)
    made = cli("checkpoint", "--url", url, "--tenant", "acme", "--signing-key", str(keys.signer_path))
    assert made.exit_code == 0, made.output
    (tmp_path / "acme.checkpoint").write_text(made.stdout)
    exported = cli("export", "--url", url, "--tenant", "acme", "-o", str(tmp_path / "acme.jsonl"))
    assert exported.exit_code == 0, exported.output
    return Signed(url, keys, tmp_path / "acme.checkpoint", tmp_path / "acme.jsonl")


def test_tail_truncation_with_the_heads_fixed_is_caught(signed: Signed) -> None:
    """The newest events deleted and the head row moved back: plain verify passes, --checkpoint fails naming acme."""
    for execute in raw(signed.url):
        cut_tail(execute, "acme", 590)
    assert cli("verify", "--url", signed.url).exit_code == 0  # what the chain alone cannot see
    result = signed.verify()
    assert result.exit_code == 1, result.output
    assert "tenant 'acme': the checkpoint covers 600 events but the store holds only the first 590" in result.stdout


def test_a_consistently_rehashed_chain_is_caught(signed: Signed) -> None:
    """An old event changed and the whole chain re-hashed (heads too): verify passes, --checkpoint fails."""
    for execute in raw(signed.url):
        rehash_chain(execute, "acme", signed.url, changed_seq=5)
    assert cli("verify", "--url", signed.url).exit_code == 0
    result = signed.verify()
    assert result.exit_code == 1, result.output
    assert "tenant 'acme': its first 600 events do not give the checkpoint's root" in result.stdout


def test_a_forged_root_is_refused(signed: Signed, tmp_path: Path) -> None:
    """A checkpoint whose root was replaced, or one signed by another key: exit 1, naming the log's tenant."""
    text = signed.checkpoint.read_text()
    lines = text.split("\n")
    lines[2] = base64.b64encode(hashlib.sha256(b"forged").digest()).decode()
    forged = tmp_path / "forged.checkpoint"
    forged.write_text("\n".join(lines))
    other_signer, _ = generate_key("audit.example.com")
    resigned = tmp_path / "resigned.checkpoint"
    resigned.write_text(sign("\n".join(lines[:3]) + "\n", Signer.from_text(other_signer)))
    for checkpoint in (forged, resigned):
        for result in (signed.verify(checkpoint=checkpoint), signed.verify_export(checkpoint=checkpoint)):
            assert result.exit_code == 1, result.output
            assert "'sealog/acme'" in result.stderr
            assert "does not verify" in result.stderr


def test_an_export_cut_short_or_edited_is_caught(signed: Signed, tmp_path: Path) -> None:
    """verify-export: the last lines dropped; one event edited; one edited and the rest re-hashed: exit 1, acme."""
    lines = signed.export.read_bytes().splitlines(keepends=True)
    short = tmp_path / "short.jsonl"
    short.write_bytes(b"".join(lines[:-3]))
    edited_lines = list(lines)
    event = json.loads(edited_lines[299])
    event["outcome"] = "failure"
    edited_lines[299] = json.dumps(event).encode() + b"\n"
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(b"".join(edited_lines))
    prev, rehashed_lines = bytes(32), []
    for number, line in enumerate(lines):
        event = json.loads(line)
        if number == 299:
            event["outcome"] = "failure"
        digest = hashlib.sha256(prev + content_bytes(event)).digest()
        event["prev_hash"], event["hash"], prev = prev.hex(), digest.hex(), digest
        rehashed_lines.append(json.dumps(event).encode() + b"\n")
    rehashed = tmp_path / "rehashed.jsonl"
    rehashed.write_bytes(b"".join(rehashed_lines))
    expected = {short: "the checkpoint covers 600 events but the export holds only 597: it was cut short",
                edited: "seq 300: the content does not match its hash",
                rehashed: "the export's first 600 events do not give the checkpoint's root"}
    for export, message in expected.items():
        result = signed.verify_export(export)
        assert result.exit_code == 1, result.output
        assert "tenant 'acme'" in result.stdout, result.stdout
        assert message in result.stdout, result.stdout
    assert signed.verify_export().exit_code == 0


def test_a_healthy_log_passes_both_while_events_keep_arriving(signed: Signed, tmp_path: Path) -> None:
    """Events keep coming during verify --checkpoint and verify-export, from one checkpoint to the next: exit 0."""
    stop = threading.Event()
    with AuditLog(signed.url, spool_dir=tmp_path / "spool2", signing_key=signed.keys.signer_path,
                  checkpoint_every=3600) as log:
        def keep_emitting() -> None:
            i = 0
            while not stop.is_set():
                log.emit(tenant_id="acme", action="tool.call", metadata={"live": i})
                log.flush(5)
                i += 1

        feeder = threading.Thread(target=keep_emitting)
        feeder.start()
        try:
            assert wait_for(lambda: (log.query("acme", limit=1).events[0].seq or 0) > 620)
            assert signed.verify("--tenant", "acme").exit_code == 0
            later = tmp_path / "later.checkpoint"
            later.write_text(log.checkpoint("acme"))
            assert open_checkpoint(later.read_text(), [signed.keys.signer.verifier()]).size > 620
            result = signed.verify("--tenant", "acme", checkpoint=later)
            assert result.exit_code == 0, result.output
            export = cli("export", "--url", signed.url, "--tenant", "acme", "-o", str(tmp_path / "live.jsonl"))
            assert export.exit_code == 0
            for checkpoint in (signed.checkpoint, later):
                checked = signed.verify_export(tmp_path / "live.jsonl", checkpoint)
                assert checked.exit_code == 0, checked.output
        finally:
            stop.set()
            feeder.join()


# -- README's standalone verifier --------------------------------------------------------------


STANDALONE_VERIFIER = '''\
import base64, hashlib, json, sys
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

export, checkpoint, verifier_key = sys.argv[1:4]  # acme.jsonl, acme.checkpoint, "name+id+key"

# 1. The checkpoint: a C2SP signed note; the signature covers the body (the first three lines).
name, key_id, key = verifier_key.strip().split("+", 2)
body, _, signatures = open(checkpoint, encoding="utf-8").read().partition("\\n\\n")
body += "\\n"
for line in signatures.splitlines():
    signer, _, signature = line.removeprefix("\\u2014 ").partition(" ")
    raw = base64.b64decode(signature)
    if signer == name and raw[:4].hex() == key_id:
        public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key)[1:])
        public_key.verify(raw[4:], body.encode())  # raises InvalidSignature when forged
        break
else:
    sys.exit("the checkpoint carries no signature by this key")
origin, size, root = body.splitlines()[:3]
size, root = int(size), base64.b64decode(root)

# 2. The export: the hash chain, and the RFC 6962 tree of its first `size` events.
def node(left, right):
    return hashlib.sha256(b"\\x01" + left + right).digest()

edge, prev, count = [], bytes(32), 0  # edge: (height, hash) of the perfect subtrees, biggest first
for line in open(export, "rb"):
    event = json.loads(line)
    content = {k: v for k, v in event.items() if k not in ("seq", "prev_hash", "hash", "recorded_at")}
    data = rfc8785.dumps(content)
    digest = hashlib.sha256(prev + data).digest()
    if event["prev_hash"] != prev.hex() or event["hash"] != digest.hex() or event["seq"] != count + 1:
        sys.exit(f"{origin}: the chain breaks at seq {event['seq']}")
    if not origin.endswith("/" + event["tenant_id"]):
        sys.exit(f"{origin}: an event of tenant {event['tenant_id']}")
    prev, count = digest, count + 1
    if count <= size:
        height, h = 0, hashlib.sha256(b"\\x00" + data).digest()
        while edge and edge[-1][0] == height:
            h, height = node(edge.pop()[1], h), height + 1
        edge.append((height, h))
if count < size:
    sys.exit(f"{origin}: the checkpoint covers {size} events, the export only {count}")
tree = edge[-1][1] if edge else hashlib.sha256(b"").digest()
for _, h in reversed(edge[:-1]):
    tree = node(h, tree)
if tree != root:
    sys.exit(f"{origin}: the first {size} events do not give the checkpoint's root")
print(f"{origin}: {count} events; the first {size} match the signed checkpoint")
'''


def run_standalone(tmp_path: Path, export: Path, checkpoint: Path, verifier: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "verify_export.py"
    script.write_text(STANDALONE_VERIFIER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-I", str(script), str(export), str(checkpoint), verifier],
                          capture_output=True, text=True, check=False, env=env, cwd=tmp_path)


def test_readme_standalone_verifier_checks_an_export_against_a_checkpoint(signed: Signed, tmp_path: Path) -> None:
    """The README's few lines (no sealog) accept a real export and refuse one cut short or re-hashed."""
    assert not re.search(r"^\s*(import|from)\s+sealog", STANDALONE_VERIFIER, re.M)
    ok = run_standalone(tmp_path, signed.export, signed.checkpoint, signed.keys.verifier)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "sealog/acme: 600 events; the first 600 match the signed checkpoint"
    lines = signed.export.read_bytes().splitlines(keepends=True)
    short = tmp_path / "short.jsonl"
    short.write_bytes(b"".join(lines[:599]))
    cut = run_standalone(tmp_path, short, signed.checkpoint, signed.keys.verifier)
    assert cut.returncode == 1
    assert "the checkpoint covers 600 events, the export only 599" in cut.stderr
    _, other_verifier = generate_key("audit.example.com")
    unsigned = run_standalone(tmp_path, signed.export, signed.checkpoint, other_verifier)
    assert unsigned.returncode == 1


def test_readme_shows_the_standalone_verifier() -> None:
    """README's "Verifiable log" section carries exactly the verifier tested above."""
    readme = (ROOT / "README.md").read_text()
    if "## Verifiable log" not in readme:
        pytest.skip("README has no Verifiable log section yet (the lead adds it from the report)")
    assert STANDALONE_VERIFIER in readme


def test_a_checkpoint_signed_meanwhile_by_another_process_is_not_a_cut(tmp_path: Path) -> None:
    """Signer A reads the tree; B signs a bigger tree before A reads the latest checkpoint: A still signs."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    signer = Signer.from_text(generate_key("race.example")[0])
    with AuditLog(url, spool_dir=tmp_path / "spool") as log:
        for i in range(10):
            log.emit(tenant_id="acme", action="auth.login", actor=("user", f"u-{i}"))
        assert log.flush(30)
        store: Any = open_store(url)
        first, second = Checkpoints(signer), Checkpoints(signer)
        real_size = store.tree_size

        def size_then_race(tenant_id: str) -> int:
            size: int = real_size(tenant_id)
            store.tree_size = real_size  # once
            for i in range(5):
                log.emit(tenant_id="acme", action="auth.login", actor=("user", f"v-{i}"))
            assert log.flush(30)
            second.sign(store, "acme")  # another worker signs the grown tree meanwhile
            return size

        store.tree_size = size_then_race
        signed = first.sign(store, "acme")  # TreeRewritten ("events were cut off") before the fix
        assert signed.tree_size in (10, 15)
        assert store.latest_checkpoint("acme").tree_size == 15
        store.close()
