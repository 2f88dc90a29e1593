"""The witness: a second party keeps every checkpoint a log showed it, and raises the alarm when the log
rewrites history.

Each check fetches ``GET /v1/checkpoint``, verifies its signature and origin, then compares it with the
checkpoint kept from the previous check: a smaller tree (events cut off), the same size with another root
(two different trees), or a bigger tree that the log cannot prove extends the kept one (RFC 9162
consistency proof from ``GET /v1/proof/consistency``, verified here) is an alarm; the evidence (both
checkpoints, the failing proof) is printed and saved beside the state. Otherwise the new checkpoint is
kept (written atomically) and appended to the history of every checkpoint seen.

State in DIR, per log and tenant (``<origin>`` percent-encoded): ``<origin>.checkpoint`` (the latest kept
note, verbatim), ``<origin>.seen.jsonl`` (every distinct checkpoint seen, with the time) and
``<origin>.alarm-<time>.txt`` (the evidence of each alarm).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from . import _timefmt as timefmt
from ._checkpoints import origin as make_origin
from ._errors import SealogError
from ._merkle import ConsistencyProofError, verify_consistency
from ._note import Checkpoint, NoteError, Verifier, open_checkpoint

if TYPE_CHECKING:
    import httpx

MAX_RESPONSE: Final = 1 << 20
"""Bytes a checkpoint or proof may take: a hostile server cannot make the witness hold more."""
EXIT_OK, EXIT_ALARM, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class WitnessError(SealogError):
    """The check could not be made; ``code`` is the command's exit code."""

    code = EXIT_USAGE


class Unreachable(WitnessError):
    """No answer from the server (connection, timeout, or a 5xx)."""

    code = EXIT_UNREACHABLE


class Alarm(WitnessError):
    """The log showed a checkpoint that contradicts the kept one (or none valid): ``evidence`` says how."""

    code = EXIT_ALARM

    def __init__(self, reason: str, evidence: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.evidence = evidence


@dataclass(frozen=True)
class Response:
    status: int
    text: str
    url: str


class Witness:
    """Checks one tenant of one log; keeps its state in ``state_dir``."""

    def __init__(self, server: str, api_key: str, tenant_id: str, verifier: Verifier, state_dir: Path,
                 log_name: str, *, timeout: float = 10.0, client: httpx.Client | None = None) -> None:
        import httpx

        self.server = server.rstrip("/")
        self.tenant_id = tenant_id
        self.verifier = verifier
        self.origin = make_origin(log_name, tenant_id)
        self.state_dir = state_dir
        name = quote(self.origin, safe="")
        self.kept_path = state_dir / f"{name}.checkpoint"
        self.history_path = state_dir / f"{name}.seen.jsonl"
        self._alarm_prefix = f"{name}.alarm-"
        self._client = client or httpx.Client(base_url=self.server, timeout=timeout, follow_redirects=False,
                                              headers={"authorization": f"Bearer {api_key}"})

    def close(self) -> None:
        self._client.close()

    # -- one check ---------------------------------------------------------------------

    def check(self) -> str:
        """One poll. Returns what it found (a line); raises Alarm, Unreachable or WitnessError."""
        kept_text = self._kept_text()
        kept = self._open_kept(kept_text) if kept_text is not None else None
        answer = self._get("/v1/checkpoint", {"tenant_id": self.tenant_id})
        if answer.status == 404:
            if kept is not None:
                raise self._alarm(f"the log now says it has no checkpoint, after showing one of size {kept.size}",
                                  kept_text, None, answer)
            return f"{self.origin}: no signed checkpoint yet"
        if answer.status == 409:  # the server itself refuses to sign: its tree is not an extension
            raise self._alarm(f"the log reports a rewritten tree: {_error_of(answer)}", kept_text, None, answer)
        self._expect_ok(answer)
        new_text = answer.text
        try:
            new = open_checkpoint(new_text, [self.verifier], self.origin)
        except NoteError as exc:
            raise self._alarm(f"the checkpoint served does not verify: {exc}", kept_text, new_text) from None
        if kept is None:
            self._keep(new_text)
            return f"{self.origin}: first checkpoint kept (trust on first use): size {new.size}, root {_b64(new.root)}"
        if new.size < kept.size:
            raise self._alarm(f"the tree shrank from {kept.size} to {new.size} events: events were cut off",
                              kept_text, new_text)
        if new.size == kept.size:
            if new.root != kept.root:
                raise self._alarm(f"two different trees of size {new.size}: roots {_b64(kept.root)} and "
                                  f"{_b64(new.root)}", kept_text, new_text)
            if new_text != kept_text:
                self._keep(new_text)  # re-signed, same tree: keep the newest note
            return f"{self.origin}: unchanged at size {new.size}"
        proof, proof_answer = self._consistency(kept, new, kept_text, new_text)
        try:
            verify_consistency(kept.size, new.size, proof, kept.root, new.root)
        except ConsistencyProofError as exc:
            raise self._alarm(f"the tree of {new.size} events is not an extension of the kept one of {kept.size}: "
                              f"{exc}", kept_text, new_text, proof_answer) from None
        self._keep(new_text)
        return f"{self.origin}: size {kept.size} -> {new.size}, consistent; kept root {_b64(new.root)}"

    def _consistency(self, kept: Checkpoint, new: Checkpoint, kept_text: str | None,
                     new_text: str) -> tuple[list[bytes], Response]:
        answer = self._get("/v1/proof/consistency",
                           {"tenant_id": self.tenant_id, "first": str(kept.size), "second": str(new.size)})
        if answer.status >= 500:
            self._expect_ok(answer)
        if answer.status != 200:  # the log cannot prove its new tree extends the old one
            raise self._alarm(f"no consistency proof from size {kept.size} to {new.size}: {_error_of(answer)}",
                              kept_text, new_text, answer)
        try:
            body = json.loads(answer.text)
            if (body.get("first"), body.get("second")) != (kept.size, new.size) or not isinstance(body["hashes"], list):
                raise ValueError(f"a proof for sizes {body.get('first')!r} to {body.get('second')!r}")
            hashes = [base64.b64decode(h, validate=True) for h in body["hashes"]]
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
            raise self._alarm(f"the consistency proof from size {kept.size} to {new.size} is malformed: {exc}",
                              kept_text, new_text, answer) from None
        return hashes, answer

    # -- HTTP --------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str]) -> Response:
        import httpx

        try:
            with self._client.stream("GET", path, params=params) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE:
                        raise WitnessError(f"{response.url}: the answer exceeds {MAX_RESPONSE} bytes")
                return Response(response.status_code, body.decode("utf-8", "replace"), str(response.url))
        except httpx.HTTPError as exc:
            raise Unreachable(f"{self.server}: {type(exc).__name__}: {exc}") from None

    def _expect_ok(self, answer: Response) -> None:
        if answer.status >= 500:
            raise Unreachable(f"{answer.url}: {answer.status}: {_error_of(answer)}")
        if answer.status in (401, 403):
            raise WitnessError(f"{answer.url}: {answer.status}: {_error_of(answer)} (check --api-key and --tenant)")
        if answer.status != 200:
            raise WitnessError(f"{answer.url}: unexpected answer {answer.status}: {_error_of(answer)}")

    # -- state -------------------------------------------------------------------------

    def _kept_text(self) -> str | None:
        try:
            return self.kept_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise WitnessError(f"cannot read the kept checkpoint {self.kept_path}: {exc}") from None

    def _open_kept(self, text: str) -> Checkpoint:
        try:
            return open_checkpoint(text, [self.verifier], self.origin)
        except NoteError as exc:
            raise WitnessError(f"the kept checkpoint {self.kept_path} does not verify with this key: {exc}") from None

    def _keep(self, note: str) -> None:
        """Replace the kept checkpoint atomically (write, fsync, rename), then add it to the history."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".checkpoint-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(note)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.kept_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.state_dir)
        with self.history_path.open("a", encoding="utf-8") as history:
            history.write(json.dumps({"seen_at": timefmt.now(), "checkpoint": note}) + "\n")
            history.flush()
            os.fsync(history.fileno())

    def _alarm(self, reason: str, kept: str | None, new: str | None, answer: Response | None = None) -> Alarm:
        parts = [f"ALARM {self.origin} at {self.server}: {reason}",
                 "--- the kept checkpoint", kept.rstrip("\n") if kept else "(none)",
                 "--- the checkpoint served now", new.rstrip("\n") if new else "(none)"]
        if answer is not None:
            parts += [f"--- the server's answer to GET {answer.url} ({answer.status})", answer.text.rstrip("\n")]
        evidence = "\n".join(parts) + "\n"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        stamp = timefmt.now().replace(":", "")
        path = self.state_dir / f"{self._alarm_prefix}{stamp}.txt"
        path.write_text(evidence, encoding="utf-8")
        return Alarm(reason, evidence + f"--- evidence saved to {path}\n")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _error_of(answer: Response) -> str:
    try:
        body = json.loads(answer.text)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])
    except ValueError:
        pass
    return answer.text[:300].strip() or "(empty body)"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def run(witness: Witness, *, once: bool, interval: float, stop: threading.Event,
        say: Callable[[str], None], complain: Callable[[str], None]) -> int:
    """Check once, or every ``interval`` seconds until ``stop``; the exit code (0 ok, 1 alarm, 2, 3).

    ``say`` gets what was found and an alarm's evidence (stdout), ``complain`` why a check could not be made.
    """
    last = ""
    while True:
        try:
            line = witness.check()
        except Alarm as exc:
            say(exc.evidence.rstrip("\n"))
            return EXIT_ALARM
        except WitnessError as exc:
            complain(f"sealog: witness: {exc}")
            return exc.code
        if once or line != last:  # a loop prints only what changed
            say(line)
        last = line
        if once or stop.wait(interval):
            return EXIT_OK
