"""Secrets are scrubbed at emit, before anything touches disk: by key at any depth, by
shape inside any string, with "[REDACTED]" in their place."""

from __future__ import annotations

import copy
import logging
import secrets
import string
from pathlib import Path

import pytest
from click.testing import CliRunner

from sealog import REDACTED, AuditLog, Redactor
from sealog._redact import DEFAULT, Finding
from sealog._redact_cli import redact_check
from sealog.testing import MemoryStore


def test_the_replacement_is_the_redacted_marker() -> None:
    """The marker that replaces a secret is exactly the string "[REDACTED]"."""
    assert REDACTED == "[REDACTED]"
    assert DEFAULT.redact({"password": "x"}) == {"password": "[REDACTED]"}


SECRET_KEYS = [
    "password", "Password", "PASSWORD", "passwd", "user_password", "passphrase", "secret", "client_secret",
    "clientSecret", "token", "access_token", "refresh-token", "api_key", "apikey", "API-KEY", "X-Api-Key",
    "authorization", "Authorization", "proxy-authorization", "cookie", "Cookie", "set-cookie", "Set-Cookie",
    "session", "session_id", "sessionId", "private_key", "privateKey", "private-key", "credit_card",
    "creditCard", "credit card", "card_number", "cardNumber", "card number", "ssn", "SSN", "customer_ssn",
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


@pytest.mark.parametrize("key", [
    "db_password", "userPassword", "user-password", "USER_PASSWORD", "X-Api-Key", "apiKey", "APIKey",
    "access_token", "refreshToken", "client_secret", "private_key_pem", "aws_secret_access_key", "customer_ssn",
    "card_number", "cvv", "otp", "pin_code", "otp_code", "pinCode", "smtp_pass", "db.password", "mfa_code",
    "sessionToken", "AccountKey", "id_token", "github-token", "passwordHash", "x-auth-token",
])
def test_secret_words_match_inside_longer_names_in_any_case_and_separator(key: str) -> None:
    """A secret word is found as a whole word in snake, kebab, camel, dotted and upper-case names."""
    assert DEFAULT.secret_key(key)
    assert DEFAULT.redact({key: "value"}) == {key: REDACTED}


@pytest.mark.parametrize("key", [
    "token_count", "pinned", "spinner", "passage", "compass", "bypass", "secretary", "author", "keyboard",
    "monkey", "tokenizer", "prompt_tokens", "max_tokens", "token_type", "session_timeout", "cookie_consent",
    "password_changed_at", "passwordless", "typing", "mapping", "shipping",
])
def test_benign_look_alikes_keep_their_values(key: str) -> None:
    """Words that merely contain a secret word, or describe one (counts, times, kinds), are kept."""
    assert not DEFAULT.secret_key(key)
    assert DEFAULT.redact({key: "value"}) == {key: "value"}


def test_password_changed_at_is_kept_as_a_judgement_call() -> None:
    """password_changed_at holds when, not what: an audit trail needs it (see the module docstring)."""
    assert DEFAULT.redact({"password_changed_at": "2024-05-01T12:00:00Z"}) == {
        "password_changed_at": "2024-05-01T12:00:00Z"}


@pytest.mark.parametrize("value", [{"nested": "object"}, ["a", "list"], ("a", "tuple"), 1234, 3.5, True, "text"])
def test_a_secret_keys_whole_value_goes_whatever_its_type(value: object) -> None:
    """Under a secret-named key a dict, list, number or bool is replaced whole; None stays None."""
    assert DEFAULT.redact({"pin": value, "password": None}) == {"pin": REDACTED, "password": None}


def test_only_the_secret_part_of_a_string_is_replaced() -> None:
    """A connection string keeps its scheme, user, host and database: only the password goes."""
    assert DEFAULT.text("postgresql://user:s3cr3t@host/db") == f"postgresql://user:{REDACTED}@host/db"
    assert DEFAULT.text("redis://:s3cr3t@cache:6379/0") == f"redis://:{REDACTED}@cache:6379/0"
    assert DEFAULT.text("db_password=p,ss;w&rd! next") == f"db_password={REDACTED} next"


def test_a_shape_glued_to_another_rules_word_is_still_found() -> None:
    """'cookie' running into a JWT's 'eyJ': the literal pre-check sees overlapping words too."""
    token = jwt()
    assert token not in DEFAULT.text(f"cookie{token}")
    assert DEFAULT.text(f"basicookie: sid={secrets.token_hex(8)}") == f"basicookie: {REDACTED}"


def test_tuples_and_lists_come_back_as_they_were_when_clean() -> None:
    """An unchanged tuple is the same object; a changed one stays a tuple, the caller's untouched."""
    clean, dirty = ("a", "b"), ("a", "Bearer abcdefghijklmnop")
    assert DEFAULT.redact(clean) is clean
    assert DEFAULT.redact(dirty) == ("a", REDACTED)
    assert dirty == ("a", "Bearer abcdefghijklmnop")


def test_allow_lists_keep_named_keys_and_matching_values() -> None:
    """allow_keys (names, compared normalized) and allow_values (regexes) are never redacted."""
    redactor = Redactor(allow_keys=["session_id"], allow_values=[r"sk_test_\w+"])
    test_key = "sk_test_" + "a1" * 12
    assert redactor.redact({"sessionId": "s-1", "api_key": test_key, "note": f"used {test_key}"}) == {
        "sessionId": "s-1", "api_key": test_key, "note": f"used {test_key}"}
    assert redactor.redact({"password": "x", "note": "sk_live_" + "a1" * 12}) == {
        "password": REDACTED, "note": REDACTED}


def test_explain_names_the_path_rule_and_replaced_text() -> None:
    """explain() says where each replacement happens, by which rule, and what it replaced."""
    findings = DEFAULT.explain({"db": {"url": "postgresql://u:pw123@h/db"}, "password": {"a": 1},
                                "items": ["ok", "auth failed: token=abc123"]})
    assert findings == [
        Finding("metadata.db.url", "url-userinfo", "pw123", 15, 20),
        Finding("metadata.password", "key-name", "{'a': 1}"),
        Finding("metadata.items[1]", "key-value", "abc123", 19, 25),
    ]
    assert DEFAULT.explain({"fine": "nothing here"}) == []


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
    pytest.param("db_password={s} refused", "{s}", "refused", id="prefixed-password-equals"),
    pytest.param("GET /callback?code=1&access_token={s}&state=2", "{s}", "state=2", id="access-token-in-url"),
    pytest.param('upstream said {{"password": "{s}", "user": "bob"}}', "{s}", "bob", id="json-in-message"),
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


def test_redact_check_shows_rule_and_path_masked_and_the_stored_result() -> None:
    """redact-check on JSON names path and rule, masks the secret, prints what would be stored; exit 0."""
    secret = secrets.token_hex(12)
    result = CliRunner().invoke(redact_check, [f'{{"db": {{"url": "postgresql://u:{secret}@h/db"}}}}'])
    assert result.exit_code == 0
    assert "metadata.db.url[15:39]  url-userinfo" in result.output
    assert secret not in result.output
    assert f"postgresql://u:{REDACTED}@h/db" in result.output


def test_redact_check_reads_text_from_stdin_and_shows_in_full_on_request() -> None:
    """'-' reads text from stdin; --show prints the replaced text itself; a clean value says so."""
    secret = secrets.token_hex(12)
    shown = CliRunner().invoke(redact_check, ["--show", "-"], input=f"login failed password={secret}\n")
    assert shown.exit_code == 0
    assert f"metadata[22:46]  key-value  {secret}" in shown.output
    assert f"login failed password={REDACTED}" in shown.output
    clean = CliRunner().invoke(redact_check, ["nothing to see"])
    assert (clean.exit_code, clean.output) == (0, "no secrets found\nredacted:\nnothing to see\n")


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


def test_metadata_from_the_context_is_redacted_too(tmp_path: Path) -> None:
    """Secrets in context(metadata=...) are scrubbed like emit's own metadata."""
    planted = Planted()
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool") as log:
        with log.context(tenant_id="acme", metadata={"session": planted.secret("ctx"), "app": planted.neighbour("ctx")}):
            log.emit(action="test.context")
        assert log.flush()
    assert_only_neighbours(raw_bytes(tmp_path), planted)


def test_a_secret_setting_change_keeps_neither_value(tmp_path: Path) -> None:
    """settings_change('smtp_password', old, new) records that it changed, not the passwords."""
    planted = Planted()
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool") as log:
        log.settings_change("acme", planted.neighbour("actor"), "smtp_password", planted.secret("old"),
                            planted.secret("new"))
        assert log.flush()
    assert_only_neighbours(raw_bytes(tmp_path), planted)

