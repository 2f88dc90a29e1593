"""Secrets are scrubbed before anything touches disk."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from sealog import REDACTED, AuditLog, Redactor
from sealog.redact import DEFAULT


@pytest.mark.parametrize("key", [
    "password", "Passwd", "user_pwd", "client_secret", "secret", "access_token", "refresh-token",
    "api_key", "apikey", "X-Api-Key", "Authorization", "cookie", "Set-Cookie", "session", "session_id",
    "private_key", "credit_card", "card_number", "cvv", "ssn", "aws_access_key_id",
])
def test_secret_keys_are_replaced_at_any_depth(key: str) -> None:
    """A secret-looking key has its whole value replaced, nested in objects and lists."""
    value = {"outer": [{"inner": {key: "s3cr3t-value"}}], key: {"whole": "object"}}
    assert DEFAULT.redact(value) == {"outer": [{"inner": {key: REDACTED}}], key: REDACTED}


@pytest.mark.parametrize("text", [
    "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123",
    "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "key AKIAIOSFODNN7EXAMPLE in the logs",
    "failed: password=hunter2&user=bob",
    "config token: 'abc123def'",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    "stripe sk_live_51H8abcdefghijklmnop",
])
def test_secret_shapes_in_strings_are_replaced(text: str) -> None:
    """Token shapes inside free text are cut out; the rest of the message stays."""
    scrubbed = DEFAULT.text(text)
    assert REDACTED in scrubbed
    for secret in ("abcdefghijklmnop", "dozjgNryP4J3", "AKIAIOSFODNN7EXAMPLE", "hunter2", "abc123def",
                   "MIIEow", "sk_live_51H8"):
        assert secret not in scrubbed


def test_plain_values_are_untouched_and_not_copied() -> None:
    """Nothing to scrub: the very same objects come back (no copy on the emit path)."""
    value = {"method": "sso", "count": 3, "tags": ["a", "b"], "ratio": 0.5, "ok": True}
    assert DEFAULT.redact(value) is value


def test_custom_rules_and_the_callers_dict_is_not_mutated() -> None:
    """extra_keys / extra_values extend the defaults; the caller's object stays as it was."""
    redactor = Redactor(extra_keys=[r"iban"], extra_values=[r"\bACCT-\d+\b"])
    original = {"iban": "DE89370400440532013000", "note": "moved ACCT-12345 today", "password": "x"}
    scrubbed = redactor.redact(original)
    assert scrubbed == {"iban": REDACTED, "note": f"moved {REDACTED} today", "password": REDACTED}
    assert original["iban"] == "DE89370400440532013000"
    assert Redactor(keys=[], values=[]).redact({"password": "x"}) == {"password": "x"}


@pytest.mark.allow_sealog_errors
def test_no_secret_reaches_any_file(tmp_path: Path) -> None:
    """Raw bytes of the spool (store down, so it holds everything) and then of the database."""
    planted = {name: f"{name}-{secrets.token_hex(8)}" for name in (
        "password", "token", "cookie", "before", "after", "proof", "error", "bearer", "jwt", "aws", "arg")}
    jwt = f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi{secrets.token_hex(6)}.{planted['jwt']}"
    aws = "AKIA" + secrets.token_hex(8).upper()
    later = tmp_path / "later"  # the store's directory appears only after the spool is read
    log = AuditLog(f"sqlite:///{later / 'audit.db'}", spool_dir=tmp_path / "spool")
    log.emit(tenant_id="acme", action="auth.login",
             metadata={"password": planted["password"], "nested": [{"access_token": planted["token"]}],
                       "headers": {"Cookie": planted["cookie"], "Authorization": f"Bearer {planted['bearer']}"},
                       "note": f"jwt {jwt} and {aws}", "visible": "neighbour-value"},
             proof={"type": "api_response", "data": {"client_secret": planted["proof"]}},
             before={"api_key": planted["before"]}, after={"settings": {"secret": planted["after"]}},
             error_message=f"login failed password={planted['error']}")

    @log.audited("tool.call", tenant_id="acme")
    def call(query: str, api_key: str) -> None:
        raise RuntimeError(f"upstream refused token={planted['arg']}")

    with pytest.raises(RuntimeError):
        call("weather", api_key=planted["arg"])

    def check_files() -> None:
        blobs = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
        assert b"neighbour-value" in blobs  # the event really was written
        assert b"weather" in blobs
        for secret in [*planted.values(), jwt, aws]:
            assert secret.encode() not in blobs, secret

    assert not log.flush(0.2)
    assert log.stats()["backlog"] == 2
    check_files()  # the spool
    later.mkdir()
    assert log.flush()
    log.close()
    check_files()  # the database
