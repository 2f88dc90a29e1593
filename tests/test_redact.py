"""Secrets are scrubbed at emit, before anything touches disk: by key at any depth, by
shape inside any string, with "[REDACTED]" in their place."""

from __future__ import annotations

import copy
import logging
import secrets
import string
from pathlib import Path

import pytest

from sealog import REDACTED, AuditLog, Redactor
from sealog._redact import DEFAULT
from sealog.testing import MemoryStore


def bug(reason: str) -> pytest.MarkDecorator:
    """A known src bug, reported to its owner; strict, so the fix turns this into a failure to remove."""
    return pytest.mark.xfail(reason=f"BUG: {reason}", strict=True, raises=AssertionError)


def test_the_replacement_is_the_redacted_marker() -> None:
    """The marker that replaces a secret is exactly the string "[REDACTED]"."""
    assert REDACTED == "[REDACTED]"
    assert DEFAULT.redact({"password": "x"}) == {"password": "[REDACTED]"}


SECRET_KEYS = [
    "password", "Password", "PASSWORD", "passwd", "user_password", "passphrase", "secret", "client_secret",
    "clientSecret", "token", "access_token", "refresh-token", "api_key", "apikey", "API-KEY", "X-Api-Key",
    "authorization", "Authorization", "proxy-authorization", "cookie", "Cookie", "set-cookie", "Set-Cookie",
    "session", "session_id", "sessionId", "private_key", "privateKey", "private-key", "credit_card",
    "creditCard", "credit card", "card_number", "cardNumber", "card number", "ssn", "SSN",
    pytest.param("customer_ssn", marks=bug(r"redact.py DEFAULT_KEYS: r'\bssn\b' needs a word boundary, "
                                           "and '_' is a word character, so customer_ssn is kept")),
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys_are_replaced_at_any_depth(key: str) -> None:
    """A secret-looking key has its whole value replaced: top level, nested in objects and lists."""
    value = {key: "s3cr3t", "outer": [{"inner": {key: {"whole": "object"}}}, "plain"], "keep": "visible"}
    assert DEFAULT.redact(value) == {
        key: REDACTED, "outer": [{"inner": {key: REDACTED}}, "plain"], "keep": "visible",
    }


@pytest.mark.parametrize("key", ["method", "user_id", "email", "path", "count", "platform", "status"])
def test_ordinary_keys_keep_their_values(key: str) -> None:
    """Keys that do not look secret are left alone, however deep."""
    value = {key: "value", "nested": [{key: 3}]}
    assert DEFAULT.redact(value) == value


def aws_key() -> str:
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def jwt() -> str:
    return f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi{secrets.token_hex(8)}.{secrets.token_urlsafe(24)}"


VALUE_CASES = [
    # (text with a secret, the secret that must disappear, a neighbour that must stay)
    pytest.param("call failed: Authorization: Bearer {s}", "{s}", "call failed", id="bearer"),
    pytest.param("header was 'bearer {s}' today", "{s}", "today", id="bearer-lower-case"),
    pytest.param("sent Basic {s}== upstream", "{s}", "upstream", id="basic-auth"),
    pytest.param("token {jwt} expired", "{jwt}", "expired", id="jwt"),
    pytest.param("key {aws} in the logs", "{aws}", "in the logs", id="aws-access-key"),
    pytest.param("failed: password={s}&user=bob", "{s}", "user=bob", id="password-equals"),
    pytest.param("login with passwd: {s} refused", "{s}", "refused", id="passwd-colon"),
    pytest.param("config token: '{s} with spaces' loaded", "{s}", "loaded", id="token-quoted"),
    pytest.param('retry with api_key="{s}" later', "{s}", "later", id="api-key-double-quoted"),
    pytest.param("secret = {s}; next", "{s}", "next", id="secret-spaced"),
    pytest.param("client_secret={s} rejected", "{s}", "rejected", id="client-secret-equals"),
    pytest.param("PASSWORD={s} from env", "{s}", "from env", id="upper-case-word"),
    pytest.param("-----BEGIN RSA PRIVATE KEY-----\n{s}\n-----END RSA PRIVATE KEY-----\nafter", "{s}", "after",
                 id="private-key-block"),
    pytest.param("-----BEGIN OPENSSH PRIVATE KEY-----\n{s}\n-----END OPENSSH PRIVATE KEY-----", "{s}", "",
                 id="openssh-key-block"),
    pytest.param("key dump -----BEGIN PRIVATE KEY-----\n{s}", "{s}", "key dump", id="truncated-key-block"),
    pytest.param("db_password={s} refused", "{s}", "refused", id="prefixed-password-equals",
                 marks=bug(r"redact.py _KEY_VALUE starts with \b, so db_password=... (a '_' before the word) leaks")),
    pytest.param("GET /callback?code=1&access_token={s}&state=2", "{s}", "state=2", id="access-token-in-url",
                 marks=bug(r"redact.py _KEY_VALUE starts with \b, so access_token=... leaks")),
    pytest.param('upstream said {{"password": "{s}", "user": "bob"}}', "{s}", "bob", id="json-in-message",
                 marks=bug("redact.py _KEY_VALUE needs [=:] right after the word: a JSON body's \"password\": leaks")),
]


def fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


@pytest.mark.parametrize(("template", "secret", "neighbour"), VALUE_CASES)
def test_secret_shapes_in_strings_are_replaced(template: str, secret: str, neighbour: str) -> None:
    """Token shapes are cut out of free text wherever it sits; the rest of the text stays."""
    values = {"s": secrets.token_hex(12), "jwt": jwt(), "aws": aws_key()}
    text, hidden = fill(template, values), fill(secret, values)
    for scrubbed in (DEFAULT.text(text),
                     DEFAULT.redact({"note": text})["note"],
                     DEFAULT.redact({"list": [[text]]})["list"][0][0],
                     DEFAULT.redact(text, "before")):
        assert hidden not in scrubbed
        assert REDACTED in scrubbed
        assert neighbour in scrubbed


def test_plain_values_are_untouched_and_not_copied() -> None:
    """Nothing to scrub: the very same objects come back (no copy on the emit path)."""
    value = {"method": "sso", "count": 3, "tags": ["a", "b"], "ratio": 0.5, "ok": True, "note": "a=b c: d"}
    assert DEFAULT.redact(value) is value
    assert DEFAULT.text("nothing secret here") == "nothing secret here"


def test_custom_rules_extend_the_defaults() -> None:
    """Redactor(extra_keys=..., extra_values=...) adds rules; the defaults still apply."""
    redactor = Redactor(extra_keys=[r"iban"], extra_values=[r"\bACCT-\d+\b"])
    scrubbed = redactor.redact({"IBAN": "DE89370400440532013000", "note": "moved ACCT-12345 today",
                                "password": "x", "auth": "Bearer abcdefghijklmnop"})
    assert scrubbed == {"IBAN": REDACTED, "note": f"moved {REDACTED} today", "password": REDACTED, "auth": REDACTED}
    assert DEFAULT.redact({"iban": "DE89"}) == {"iban": "DE89"}  # the default instance is unchanged


def test_rules_can_be_replaced_entirely() -> None:
    """keys=[] and values=[] switch the defaults off, for a caller who scrubs upstream."""
    bare = Redactor(keys=[], values=[])
    assert bare.redact({"password": "x", "note": "Bearer abcdefghijklmnop"}) == {
        "password": "x", "note": "Bearer abcdefghijklmnop"}


def test_the_callers_objects_are_never_mutated(tmp_path: Path) -> None:
    """Redaction copies what it changes: the caller's dicts and lists are as they were, after emit too."""
    metadata = {"password": "p", "nested": [{"token": "t", "keep": 1}], "note": "Bearer abcdefghijklmnop"}
    proof = {"type": "api_response", "data": {"client_secret": "c"}}
    before, after = {"api_key": "old"}, [{"secret": "new"}]
    originals = copy.deepcopy((metadata, proof, before, after))
    DEFAULT.redact(metadata)
    with AuditLog(store=MemoryStore(), spool_dir=tmp_path / "spool") as log:
        event_id = log.emit(tenant_id="acme", action="test.redact", metadata=metadata, proof=proof,
                            before=before, after=after)
        assert log.flush()
        stored = log.get("acme", event_id)
    assert (metadata, proof, before, after) == originals
    assert stored is not None
    assert stored.metadata == {"password": REDACTED, "nested": [{"token": REDACTED, "keep": 1}], "note": REDACTED}
    assert stored.proof == {"type": "api_response", "data": {"client_secret": REDACTED}}
    assert (stored.before, stored.after) == ({"api_key": REDACTED}, [{"secret": REDACTED}])


def test_an_audit_log_applies_its_own_redactor(tmp_path: Path) -> None:
    """AuditLog(redactor=...) scrubs with the caller's rules, in metadata and error messages."""
    redactor = Redactor(extra_keys=[r"iban"], extra_values=[r"\bACCT-\d+\b"])
    with AuditLog(store=MemoryStore(), spool_dir=tmp_path / "spool", redactor=redactor) as log:
        event_id = log.emit(tenant_id="acme", action="test.redact", metadata={"iban": "DE89", "k": "v"},
                            error_message="cannot move ACCT-991 now")
        assert log.flush()
        stored = log.get("acme", event_id)
    assert stored is not None
    assert stored.metadata == {"iban": REDACTED, "k": "v"}
    assert stored.error_message == f"cannot move {REDACTED} now"


# -- nothing reaches a file ----------------------------------------------------------


class Planted:
    """Distinct random secrets, each with a non-secret neighbour written beside it."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.neighbours: list[str] = []

    def secret(self, place: str) -> str:
        self.secrets[place] = f"{place}-{secrets.token_hex(10)}"
        return self.secrets[place]

    def neighbour(self, place: str) -> str:
        self.neighbours.append(f"visible-{place}-{secrets.token_hex(4)}")
        return self.neighbours[-1]


def emit_secrets_everywhere(log: AuditLog, planted: Planted) -> None:
    s, n = planted.secret, planted.neighbour
    aws, token = aws_key(), jwt()
    planted.secrets |= {"aws": aws, "jwt": token}
    pem = f"-----BEGIN PRIVATE KEY-----\n{s('pem')}\n-----END PRIVATE KEY-----"
    log.emit(
        tenant_id="acme", action="auth.login",
        metadata={"password": s("md-password"), "passwd": s("md-passwd"), "method": n("md"),
                  "nested": [{"access_token": s("md-token"), "keep": n("md-nested")}],
                  "headers": {"Cookie": s("md-cookie"), "Set-Cookie": s("md-set-cookie"),
                              "Authorization": f"Bearer {s('md-bearer')}", "X-Api-Key": s("md-apikey")},
                  "session": s("md-session"), "apikey": s("md-apikey2"), "private_key": s("md-private-key"),
                  "client_secret": s("md-client-secret"), "credit card": s("md-cc"), "card_number": s("md-card"),
                  "ssn": s("md-ssn"), "note": f"{n('md-note')} jwt {token} aws {aws} key {pem}"},
        proof={"type": "api_response", "data": {"token": s("proof-token"), "post_id": n("proof"),
                                                 "echo": f"Bearer {s('proof-bearer')}"}},
        before={"api_key": s("before-key"), "theme": n("before")},
        after={"settings": {"secret": s("after-secret"), "theme": n("after")},
               "log": f"set password={s('after-kv')}"},
        error_message=f"{n('error')} login failed password={s('error-kv')} with Bearer {s('error-bearer')}",
    )
    log.login("acme", "u-1", metadata={"password": s("helper-password"), "client": n("helper")})

    @log.audited("tool.call", tenant_id="acme")
    def call_tool(query: str, api_key: str) -> None:
        raise RuntimeError(f"upstream refused token={planted.secrets['audited-arg']} for {query}")

    with pytest.raises(RuntimeError):
        call_tool(n("audited"), api_key=s("audited-arg"))


def raw_bytes(root: Path) -> bytes:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    return b"\x00".join(p.read_bytes() for p in files)


def assert_only_neighbours(blob: bytes, planted: Planted) -> None:
    for neighbour in planted.neighbours:
        assert neighbour.encode() in blob, f"{neighbour} was never written: the test proves nothing"
    leaked = [place for place, secret in planted.secrets.items() if secret.encode() in blob]
    assert not leaked, f"secrets on disk: {leaked}"


def test_no_secret_reaches_the_database_wal_or_spool_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Raw bytes of every file (the .db, -wal, -shm, spool segments, quarantine) hold no planted secret."""
    planted = Planted()
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool")
    with caplog.at_level(logging.DEBUG, logger="sealog.events"):
        emit_secrets_everywhere(log, planted)
    assert log.flush()
    stored = log.query("acme", action="auth.login").events[-1]
    assert stored.metadata["password"] == REDACTED
    assert raw_bytes(tmp_path)  # the -wal file is still there while the log is open
    assert_only_neighbours(raw_bytes(tmp_path), planted)
    log.close()
    assert_only_neighbours(raw_bytes(tmp_path), planted)
    records = [r for r in caplog.records if r.name == "sealog.events"]
    assert len(records) == 3
    assert_only_neighbours(repr([r.sealog_event for r in records]).encode(), planted)  # type: ignore[attr-defined]


def test_no_secret_reaches_the_spool_while_the_store_is_away(tmp_path: Path) -> None:
    """With the store unreachable the spool holds every event: its raw bytes hold no secret either."""
    planted = Planted()
    later = tmp_path / "later"  # the store's directory appears only after the spool is checked
    log = AuditLog(f"sqlite:///{later / 'audit.db'}", spool_dir=tmp_path / "spool")
    try:
        emit_secrets_everywhere(log, planted)
        assert not log.flush(0.2)
        assert log.stats()["backlog"] == 3
        assert_only_neighbours(raw_bytes(tmp_path / "spool"), planted)
        later.mkdir()
        assert log.flush(10)
    finally:
        log.close()
    assert_only_neighbours(raw_bytes(tmp_path), planted)


@pytest.mark.xfail(reason="BUG: log.py _enrich merges context() metadata after redaction: stored in clear",
                   strict=True, raises=AssertionError)
def test_metadata_from_the_context_is_redacted_too(tmp_path: Path) -> None:
    """Secrets in context(metadata=...) are scrubbed like emit's own metadata."""
    planted = Planted()
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool") as log:
        with log.context(tenant_id="acme", metadata={"session": planted.secret("ctx"), "app": planted.neighbour("ctx")}):
            log.emit(action="test.context")
        assert log.flush()
    assert_only_neighbours(raw_bytes(tmp_path), planted)


@pytest.mark.xfail(reason="BUG: helpers.settings_change stores before/after of a secret-named setting in clear",
                   strict=True, raises=AssertionError)
def test_a_secret_setting_change_keeps_neither_value(tmp_path: Path) -> None:
    """settings_change('smtp_password', old, new) records that it changed, not the passwords."""
    planted = Planted()
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool") as log:
        log.settings_change("acme", planted.neighbour("actor"), "smtp_password", planted.secret("old"),
                            planted.secret("new"))
        assert log.flush()
    assert_only_neighbours(raw_bytes(tmp_path), planted)

