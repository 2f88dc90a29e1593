"""`sealog witness` against a live service (uvicorn on loopback): it keeps checkpoints while events keep
arriving and new ones are signed, and raises the alarm with the evidence (both checkpoints, the failing
proof) when the log is cut off and re-signed, re-hashed, shows two trees of one size, or serves a checkpoint
signed by another key. Also its exit codes for an unreachable server and a wrong key.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from click.testing import CliRunner, Result

from sealog import AuditLog
from sealog._cli import main
from sealog._note import Signer, format_checkpoint, generate_key, open_checkpoint, sign
from sealog.server.app import create_app
from sealog.server.keys import KeyStore
from sealog.stores import open_store
from sealog.stores.base import TreeStore
from tests.fixtures.liveserver import serving

SEAL = ("seq", "prev_hash", "hash", "recorded_at")
KEY_NAME = "audit.example.com"


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll what a background thread (the signer, the witness loop) makes true: it has no event to await."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@dataclass
class Live:
    base: str
    url: str
    log: AuditLog
    signer_path: Path
    verifier: str
    api_key: str
    state: Path

    def witness_args(self, *extra: str) -> list[str]:
        return ["witness", "--server", self.base, "--api-key", self.api_key, "--tenant", "acme",
                "--verifier-key", self.verifier, "--state", str(self.state), *extra]

    def witness(self, *extra: str) -> Result:
        return CliRunner().invoke(main, self.witness_args("--once", *extra), catch_exceptions=False)

    def emit(self, count: int) -> None:
        for i in range(count):
            self.log.emit(tenant_id="acme", action="tool.call", metadata={"i": i})
        assert self.log.flush(20)

    @property
    def kept(self) -> Path:
        return self.state / "sealog%2Facme.checkpoint"

    def kept_size(self) -> int:
        try:
            return open_checkpoint(self.kept.read_text(), [Signer.from_text(self.signer_path.read_text()).verifier()]).size
        except FileNotFoundError:
            return 0


@contextmanager
def serve(tmp_path: Path, every: float) -> Iterator[Live]:
    signer, verifier = generate_key(KEY_NAME)
    (tmp_path / "signer.key").write_text(signer + "\n")
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = AuditLog(url, spool_dir=tmp_path / "spool", writer="thread", signing_key=tmp_path / "signer.key",
                   checkpoint_every=every)
    assert log.flush(30)  # the writer has migrated the store: no lock race with the key store below
    keys = KeyStore(log.url)
    keys.migrate()
    try:
        with serving(create_app(log, keys)) as base:
            yield Live(base, url, log, tmp_path / "signer.key", verifier, keys.create("acme")[1], tmp_path / "witness")
    finally:
        log.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """A service that signs only on demand (the tests play the attacker in between)."""
    with serve(tmp_path, every=3600) as live:
        yield live


# -- the attacker: write access to the database, and (some tests) the signing key ------------------


def attacker(url: str) -> sqlite3.Connection:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    for trigger in ("events_no_update", "events_no_delete", "checkpoints_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    return conn


def cut_tail(url: str, keep: int, hide: bool = True) -> None:
    """Delete acme's newest events and move its head back; ``hide``: delete the checkpoints that would tell."""
    conn = attacker(url)
    conn.execute("DELETE FROM events WHERE tenant_id = 'acme' AND seq > ?", (keep,))
    (digest,) = conn.execute("SELECT hash FROM events WHERE tenant_id = 'acme' AND seq = ?", (keep,)).fetchone()
    conn.execute("UPDATE chain_heads SET seq = ?, hash = ? WHERE tenant_id = 'acme'", (keep, digest))
    if hide:
        conn.execute("DELETE FROM checkpoints WHERE tenant_id = 'acme'")
    conn.close()


def rehash(url: str, changed_seq: int, hide: bool = True) -> None:
    """Change one event of acme and re-hash it and every later one, head included (the chain verifies);
    ``hide``: delete the checkpoints too."""
    store = open_store(url)
    events = [e.to_dict() for e in store.iter_events("acme")]
    store.close()
    events[changed_seq - 1]["metadata"] = {"rewritten": True}
    conn, prev = attacker(url), bytes(32)
    for event in events:
        digest = hashlib.sha256(prev + rfc8785.dumps({k: v for k, v in event.items() if k not in SEAL})).digest()
        conn.execute("UPDATE events SET metadata = ?, prev_hash = ?, hash = ? WHERE tenant_id = 'acme' AND seq = ?",
                     (rfc8785.dumps(event["metadata"]).decode(), prev.hex(), digest.hex(), event["seq"]))
        prev = digest
    conn.execute("UPDATE chain_heads SET hash = ? WHERE tenant_id = 'acme'", (prev.hex(),))
    if hide:
        conn.execute("DELETE FROM checkpoints WHERE tenant_id = 'acme'")
    conn.close()


def sign_tree(url: str, signer: Signer) -> str:
    """Sign acme's tree as it is now, as the attacker holding ``signer``, and store it as the latest."""
    store = open_store(url)
    assert isinstance(store, TreeStore)
    size = store.tree_size("acme")
    root = store.tree_root("acme", size)
    note = sign(format_checkpoint("sealog/acme", size, root), signer)
    store.add_checkpoint("acme", size, root, note)
    store.close()
    return note


def assert_alarm(result: Result, live: Live, reason: str, kept_before: str, *evidence: str) -> None:
    """Exit 1; stdout names the log and reason and carries both checkpoints; the kept one is unchanged."""
    assert result.exit_code == 1, result.output
    assert "ALARM sealog/acme" in result.stdout
    assert reason in result.stdout, result.stdout
    assert "--- the kept checkpoint\n" + kept_before.rstrip("\n") in result.stdout
    for text in evidence:
        assert text in result.stdout, result.stdout
    assert live.kept.read_text() == kept_before
    (saved,) = live.state.glob("sealog%2Facme.alarm-*.txt")
    assert reason in saved.read_text()


# -- tests -------------------------------------------------------------------------------------


def test_the_witness_passes_while_events_keep_arriving_and_checkpoints_are_signed(tmp_path: Path) -> None:
    """Live signing every 0.2 s under a steady stream: --once checks and a running witness keep each
    newer checkpoint after its consistency proof, exit 0, and the history holds every one seen."""
    with serve(tmp_path, every=0.2) as live:
        stop = threading.Event()

        def feed() -> None:
            while not stop.is_set():
                live.log.emit(tenant_id="acme", action="tool.call", metadata={"live": True})
                live.log.flush(5)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            sizes: list[int] = []
            outputs = ""
            deadline = time.monotonic() + 20
            while len(set(sizes)) < 3 and time.monotonic() < deadline:
                result = live.witness()
                assert result.exit_code == 0, result.output
                sizes.append(live.kept_size())
                outputs += result.stdout
            assert len(set(sizes)) == 3, sizes
            assert sizes == sorted(sizes)
            assert ", consistent; kept root" in outputs
            looping = subprocess.Popen([sys.executable, "-m", "sealog", *live.witness_args("--interval", "0.1")],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                start = live.kept_size()
                assert wait_for(lambda: live.kept_size() > start + 20, 30)
                assert looping.poll() is None
                looping.send_signal(signal.SIGTERM)
                out, err = looping.communicate(timeout=10)
            finally:
                if looping.poll() is None:
                    looping.kill()
            assert looping.returncode == 0, err
            assert "consistent" in out
        finally:
            stop.set()
            feeder.join()
        seen = [json.loads(line)["checkpoint"] for line in (live.state / "sealog%2Facme.seen.jsonl").open()]
        assert len(seen) >= 4
        assert seen[-1] == live.kept.read_text()


def test_a_cut_off_tail_re_signed_with_the_same_key_is_an_alarm(live: Live) -> None:
    """Tail deleted, head fixed, checkpoints deleted: the server re-signs the shorter tree with its own key;
    the witness reports the smaller tree with both checkpoints and exits 1, keeping the old one."""
    live.emit(40)
    first = live.witness()
    assert first.exit_code == 0, first.output
    assert "first checkpoint kept" in first.stdout
    kept_before = live.kept.read_text()
    assert live.kept_size() == 40
    cut_tail(live.url, keep=30)
    result = live.witness()
    assert_alarm(result, live, "the tree shrank from 40 to 30 events", kept_before,
                 "--- the checkpoint served now\nsealog/acme\n30\n")


def test_a_rehashed_log_that_grew_fails_the_consistency_proof(live: Live) -> None:
    """An old event changed and the chain re-hashed, then signed at a bigger size with the real key: the
    consistency proof from the kept checkpoint fails; the evidence includes the server's proof."""
    live.emit(40)
    assert live.witness().exit_code == 0
    kept_before = live.kept.read_text()
    live.emit(10)
    rehash(live.url, changed_seq=5)
    forged = sign_tree(live.url, Signer.from_text(live.signer_path.read_text()))
    result = live.witness()
    assert_alarm(result, live, "the tree of 50 events is not an extension of the kept one of 40", kept_before,
                 forged.rstrip("\n"), "/v1/proof/consistency?tenant_id=acme&first=40&second=50 (200)",
                 '"first":40,"second":50,"hashes":[')


def test_two_different_trees_of_the_same_size_are_an_alarm(live: Live) -> None:
    """The chain re-hashed without growing and re-signed with the real key: same size, another root: exit 1."""
    live.emit(40)
    assert live.witness().exit_code == 0
    kept_before = live.kept.read_text()
    rehash(live.url, changed_seq=40)
    forged = sign_tree(live.url, Signer.from_text(live.signer_path.read_text()))
    result = live.witness()
    assert_alarm(result, live, "two different trees of size 40", kept_before, forged.rstrip("\n"))


def test_a_checkpoint_signed_by_another_key_is_an_alarm(live: Live) -> None:
    """A forged checkpoint (another key, same name) served as the latest: the signature fails, exit 1."""
    live.emit(40)
    assert live.witness().exit_code == 0
    kept_before = live.kept.read_text()
    live.emit(5)
    other, _ = generate_key(KEY_NAME)
    forged = sign_tree(live.url, Signer.from_text(other))
    result = live.witness()
    assert_alarm(result, live, "the checkpoint served does not verify", kept_before, forged.rstrip("\n"))


def test_a_healthy_log_passes_once_and_unchanged_checks_stay_quiet(live: Live) -> None:
    """Grown and re-signed honestly: exit 0, the new checkpoint is kept; an unchanged one passes too."""
    live.emit(300)
    assert live.witness().exit_code == 0
    live.emit(20)
    live.log.checkpoint("acme")
    result = live.witness()
    assert result.exit_code == 0, result.output
    assert "size 300 -> 320, consistent" in result.stdout
    assert live.kept_size() == 320
    again = live.witness()
    assert again.exit_code == 0
    assert "unchanged at size 320" in again.stdout


def test_exit_codes_no_checkpoint_unreachable_and_wrong_key(live: Live, tmp_path: Path) -> None:
    """No checkpoint yet: 0; a closed port: 3; a wrong API key: 2; each with a one-line reason on stderr."""
    quiet = live.witness()
    assert quiet.exit_code == 0, quiet.output
    assert "no signed checkpoint yet" in quiet.stdout
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    args: list[Any] = live.witness_args("--once", "--timeout", "2")
    args[args.index("--server") + 1] = f"http://127.0.0.1:{closed}"
    unreachable = CliRunner().invoke(main, args)
    assert unreachable.exit_code == 3, unreachable.output
    assert "ConnectError" in unreachable.stderr
    args = live.witness_args("--once")
    args[args.index("--api-key") + 1] = "wrong"
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2, refused.output
    assert "401" in refused.stderr
