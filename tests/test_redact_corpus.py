"""A corpus of realistic secrets, fresh each run, never survives redaction or reaches a file;
benign look-alikes survive byte for byte; redaction never raises and copies nothing it need not.

The shapes follow the coverage of detect-secrets and Microsoft's secret masker (see
sealog/_redact.py): provider tokens with their real prefix, length and charset, and the
generic shapes real services leak (key=value text, JSON text, headers, URLs).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
import secrets
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealog import REDACTED, AuditLog
from sealog._redact import _SHORT, DEFAULT, DEFAULT_VALUES

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
PASSWORD = ALNUM + "!@#$%^*-_+=~."


# Words a rule takes with the secret (the scheme of a credential, what a header holds).
SCHEMES = {"bearer", "basic", "path", "httponly", "lang"}


def rand(charset: str, n: int) -> str:
    return "".join(secrets.choice(charset) for _ in range(n))


def b64(n_bytes: int) -> str:
    return base64.b64encode(secrets.token_bytes(n_bytes)).decode()


class Sample(NamedTuple):
    name: str
    secret: str  # what must never survive
    text: str  # the string it is planted in
    keep: tuple[str, ...]  # words around it that must survive


def jwt() -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    claims = json.dumps({"sub": rand(ALNUM, 12), "exp": 1_900_000_000}).encode()
    return f"{header}.{base64.urlsafe_b64encode(claims).decode().rstrip('=')}.{rand(B64URL, 43)}"


def pem(kind: str) -> tuple[str, str]:
    body = [rand(B64, 64) for _ in range(4)]
    return body[1], f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(body) + f"\n-----END {kind}PRIVATE KEY-----"


Add = Callable[..., None]


def corpus() -> list[Sample]:
    """Fifty-odd secrets, each fresh, with the real length and charset of its kind."""
    out: list[Sample] = []

    def add(name: str, secret: str, template: str, keep: tuple[str, ...] | None = None) -> None:
        around = [w for w in re.findall(r"[A-Za-z]{4,}", template.replace("{s}", " ")) if w.lower() not in SCHEMES]
        out.append(Sample(name, secret, template.format(s=secret), tuple(around) if keep is None else keep))

    provider_tokens(add)
    generic_shapes(add)
    return out


def provider_tokens(add: Add) -> None:
    """Tokens with a fixed prefix and shape, one per provider the rules know."""
    add("github-classic", "ghp_" + rand(ALNUM, 36), "git push failed with {s} for repo acme/api")
    add("github-oauth", "gho_" + rand(ALNUM, 36), "oauth token {s}")
    add("github-fine-grained", f"github_pat_{rand(ALNUM, 22)}_{rand(ALNUM, 59)}", "GH {s}")
    add("gitlab", "glpat-" + rand(B64URL, 20), "clone with {s} failed")
    add("slack-bot", f"xoxb-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{rand(ALNUM, 24)}",
        "slack said invalid_auth for {s}")
    add("slack-user", f"xoxp-{rand(string.digits, 12)}-{rand(string.digits, 12)}-{rand(string.digits, 13)}-"
        f"{rand(HEX, 32)}", "{s}")
    add("slack-webhook", f"T{rand(UPPER_DIGITS, 10)}/B{rand(UPPER_DIGITS, 10)}/{rand(ALNUM, 24)}",
        "POST https://hooks.slack.com/services/{s} returned 404")
    add("stripe-secret", "sk_live_" + rand(ALNUM, 99), "charge failed: key {s}")
    add("stripe-restricted", "rk_live_" + rand(ALNUM, 24), "{s} lacks permission")
    add("stripe-webhook", "whsec_" + rand(ALNUM, 32), "signing secret {s}")
    add("aws-access-key-id", "AKIA" + rand(UPPER_DIGITS, 16), "boto3 used {s} in us-east-1")
    add("aws-session-key-id", "ASIA" + rand(UPPER_DIGITS, 16), "assumed role key {s}")
    add("aws-secret-env", rand(B64, 40), "aws_secret_access_key={s}")
    add("google-api-key", "AIza" + rand(B64URL, 35), "maps?key={s}")
    add("google-oauth-access", "ya29." + rand(B64URL, 120), "got {s}")
    add("google-client-secret", "GOCSPX-" + rand(B64URL, 28), "client {s}")
    add("openai-project", "sk-proj-" + rand(B64URL, 156), "OpenAI 401 for {s}")
    add("openai-legacy", "sk-" + rand(ALNUM, 48), "{s}")
    add("anthropic", "sk-ant-api03-" + rand(B64URL, 93) + "AA", "key: {s}")
    add("npm", "npm_" + rand(ALNUM, 36), "npm token {s} revoked")
    add("npmrc", "npm_" + rand(ALNUM, 36), "//registry.npmjs.org/:_authToken={s}")
    add("sendgrid", f"SG.{rand(B64URL, 22)}.{rand(B64URL, 43)}", "mail via {s}")
    add("pypi", "pypi-AgEIcHlwaS5vcmc" + rand(B64URL, 70), "twine upload -p {s}")
    add("huggingface", "hf_" + rand(ALNUM, 34), "hub login {s}")
    add("shopify", "shpat_" + rand(HEX, 32), "{s}")
    add("databricks", "dapi" + rand(HEX, 32), "workspace token {s}")
    add("nuget", "oy2" + rand("abcdefghijklmnopqrstuvwxyz234567", 43), "nuget push -k {s}")
    add("square", "sq0csp-" + rand(B64URL, 43), "square {s}")
    add("mailchimp", rand(HEX, 32) + "-us" + str(secrets.randbelow(20) + 1), "mc key {s}")
    add("azure-ad-client-secret", rand(ALNUM, 3) + "8Q~" + rand(ALNUM + "_~.-", 34), "{s}")
    add("azure-storage", b64(64), "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={s};"
        "EndpointSuffix=core.windows.net")
    add("azure-sas-sig", rand(ALNUM, 43) + "%3D", "GET https://acme.blob.core.windows.net/c/b?sv=2022-11-02&sig={s}&se=2030")


def generic_shapes(add: Add) -> None:
    """The shapes any service leaks: key=value and JSON text, headers, URLs, JWTs, PEM keys."""
    add("jwt", jwt(), "session expired for {s}")
    secret, block = pem("RSA ")
    add("pem-rsa", secret, "loaded key " + block, keep=("loaded",))
    secret, block = pem("OPENSSH ")
    add("pem-openssh", secret, block, keep=())
    add("bearer-header", rand(B64URL, 40), "upstream 401, sent Authorization: Bearer {s}")
    add("bearer-lower", rand(B64URL, 32), "header bearer {s} rejected")
    add("basic-auth", base64.b64encode(f"svc:{rand(ALNUM, 16)}".encode()).decode(), "Authorization: Basic {s}")
    add("postgres-url", rand(PASSWORD.replace("@", ""), 20), "cannot connect to postgresql://app:{s}@db.internal:5432/acme")
    add("redis-url", rand(ALNUM, 24), "redis://:{s}@cache:6379/0 refused")
    add("amqp-url", rand(ALNUM, 18), "amqp://guest:{s}@rabbit:5672/%2F: connection reset")
    add("mongodb-url", rand(ALNUM, 18), "mongodb+srv://admin:{s}@cluster0.abcde.mongodb.net/?retryWrites=true")
    add("https-userinfo", rand(ALNUM, 18), "GET https://deploy:{s}@artifacts.example.com/pkg.tgz")
    add("db-password-kv", rand(PASSWORD, 18), "DB_PASSWORD={s} not accepted")
    add("query-access-token", rand(B64URL, 32), "GET /callback?code=1&access_token={s}&state=xyz")
    add("query-refresh-token", rand(B64URL, 32), "POST /oauth?grant_type=refresh&refresh_token={s}")
    add("smtp-pass", rand(PASSWORD, 14), "smtp_pass={s} rejected by relay")
    # A Cookie header is cut to the end of the line: any cookie in it may be the session.
    add("set-cookie", rand(B64URL, 32), "Set-Cookie: session={s}; Path=/; HttpOnly", keep=("Set-Cookie",))
    add("cookie", rand(B64URL, 32), "Cookie: theme=dark; sid={s}; lang=en", keep=("Cookie",))
    add("json-text", rand(PASSWORD, 16), 'upstream said {{"password": "{s}", "user": "bob"}}')
    add("python-dict-text", rand(ALNUM, 24), "kwargs were {{'api_key': '{s}', 'timeout': 3}}")
    add("yaml-client-secret", rand(ALNUM, 32), "client_secret: {s}")
    add("x-api-key-header", rand(HEX, 32), "X-Api-Key: {s}")
    add("passphrase-env", rand(PASSWORD, 20), "export GPG_PASSPHRASE='{s}'")
    add("repr-password", rand(PASSWORD, 12), "User(name='bob', password='{s}')")
    add("escaped-json", rand(ALNUM, 20), '{{\\"token\\": \\"{s}\\"}}')


KEYED = ["password", "otp_code", "pin_code", "customer_ssn", "card_number", "cvv", "clientSecret", "X-Api-Key",
         "refreshToken", "private_key_pem", "aws_secret_access_key", "user-password", "sessionId"]


def keyed_secrets() -> dict[str, str]:
    """Secret-named keys whose values are ordinary-looking strings: only the key gives them away."""
    return {key: rand(ALNUM, 12) for key in KEYED}


def planted(samples: list[Sample], keyed: dict[str, str], marker: str) -> dict[str, Any]:
    """Every sample under an ordinary key at depth 1 to 5, every third one inside a list."""
    metadata: dict[str, Any] = {"marker": marker, "creds": [{k: v} for k, v in keyed.items()]}
    for index, sample in enumerate(samples):
        node: Any = [sample.text] if index % 3 == 0 else sample.text
        for level in range(index % 5):
            node = {f"level{level}": node} if level % 2 == 0 else [{"item": node}]
        metadata[f"note_{index}"] = node
    return metadata


def all_secrets(samples: list[Sample], keyed: dict[str, str]) -> dict[str, str]:
    return {s.name: s.secret for s in samples} | {f"key:{k}": v for k, v in keyed.items()}


def leaked(blob: str | bytes, found: dict[str, str]) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [name for name, secret in found.items() if secret.encode() in data]


# -- the redactor alone ------------------------------------------------------------------


def test_corpus_is_large_fresh_and_realistic() -> None:
    """At least 40 distinct secrets, new each run, each planted verbatim in its text."""
    first, second = corpus(), corpus()
    assert len(first) >= 40
    assert len({s.secret for s in first}) == len(first)
    assert not {s.secret for s in first} & {s.secret for s in second}
    assert all(s.secret in s.text and len(s.secret) >= 12 for s in first)


def test_no_corpus_secret_survives_redaction_at_any_depth() -> None:
    """Planted at depths 1-5 and in lists, no secret is left in the redacted metadata."""
    samples, keyed = corpus(), keyed_secrets()
    metadata = planted(samples, keyed, "m")
    scrubbed = DEFAULT.redact(metadata)
    assert leaked(json.dumps(scrubbed), all_secrets(samples, keyed)) == []
    assert json.dumps(scrubbed).count(REDACTED) >= len(samples) + len(keyed)


@pytest.mark.parametrize("sample", corpus(), ids=lambda s: s.name)
def test_each_shape_is_cut_out_and_its_surroundings_kept(sample: Sample) -> None:
    """Only the secret goes: the text around it survives (the event stays useful)."""
    scrubbed = DEFAULT.text(sample.text)
    assert sample.secret not in scrubbed
    assert REDACTED in scrubbed
    assert [w for w in sample.keep if w not in scrubbed] == []


def test_every_default_rule_fires_on_the_corpus() -> None:
    """explain() names each default value rule at least once: none is dead or mis-triggered."""
    fired = {f.rule for f in DEFAULT.explain([s.text for s in corpus()], "corpus")}
    names = {re.match(r"\(\?#([^):]*)", p).group(1) for p in DEFAULT_VALUES}  # type: ignore[union-attr]
    assert names - fired == set()
    assert "key-value" in fired


def test_short_strings_without_colon_or_equals_cannot_match_a_default_rule() -> None:
    """The short-string exit is sound: every default rule without ':' or '=' needs _SHORT chars."""
    from re import _parser  # type: ignore[attr-defined]

    needs_separator = {"cookie-header", "url-userinfo"}
    for pattern in DEFAULT_VALUES:
        name = re.match(r"\(\?#([^):]*)", pattern).group(1)  # type: ignore[union-attr]
        if name not in needs_separator:
            assert _parser.parse(pattern).getwidth()[0] >= _SHORT, name


# -- benign values -----------------------------------------------------------------------


def benign() -> dict[str, Any]:
    return {
        "request_id": "0190a6c2-7d5e-7b3a-9f1e-3c2b1a0d9e8f",
        "ids": ["5f0c7a2e-2b1d-4c3a-8e9f-0a1b2c3d4e5f", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"],
        "email": "jane.doe+audit@example.com",
        "checksum": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "url": "https://api.example.com/v1/orders?page=2&sort=desc#top",
        "urls": ["postgresql://db.internal:5432/acme", "amqp://rabbit:5672/%2F", "redis://cache:6379/0"],
        "token_count": 42, "prompt_tokens": 1200, "max_tokens": 4096, "token_type": "Bearer",
        "password_changed_at": "2024-05-01T12:00:00Z",
        "occurred": ["2024-05-01T12:00:00.123456Z", "2024-05-01T14:00:00+02:00"],
        "pinned": True, "spinner": "dots", "passage": "Chapter 1", "compass": "N", "author": "Ada",
        "note": "user bob logged in from 10.0.0.7 using sso at 12:00; 3 attempts",
        "agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "path": "/v1/users/u-123/sessions", "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "ratio": 0.25, "nothing": None, "nested": {"deep": [{"deeper": {"level": 5, "id": "doc-17"}}]},
    }


def test_benign_values_survive_byte_for_byte() -> None:
    """UUIDs, emails, checksums, credential-free URLs, counts, timestamps: the same objects back."""
    value = benign()
    before = json.dumps(value, sort_keys=True)
    assert DEFAULT.redact(value) is value
    assert DEFAULT.explain(value) == []
    assert json.dumps(value, sort_keys=True) == before


def test_password_changed_at_is_kept_but_its_value_is_still_scanned() -> None:
    """The documented call: a name describing a secret keeps a timestamp, but not a leaked token."""
    aws = "AKIA" + rand(UPPER_DIGITS, 16)
    scrubbed = DEFAULT.redact({"password_changed_at": "2024-05-01T12:00:00Z", "token_count": f"42 {aws}"})
    assert scrubbed == {"password_changed_at": "2024-05-01T12:00:00Z", "token_count": f"42 {REDACTED}"}


# -- properties --------------------------------------------------------------------------

json_leaf = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
             | st.text(max_size=60))
json_like = st.recursive(
    json_leaf,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(st.text(max_size=20), inner, max_size=4)),
    max_leaves=20,
)
# Words that cannot make a secret however they combine: no key anchor, no token prefix.
SAFE_WORDS = ["alpha", "beta", "user", "doc", "order", "read", "write", "ok", "2024-05-01", "12", "0.5", "x/y",
              "hello world", "name", "id", "value", "n", "r-9", "email", "eu-west-1", "done."]
safe_text = st.lists(st.sampled_from(SAFE_WORDS), max_size=6).map(" ".join)
safe_value = st.recursive(
    st.none() | st.booleans() | st.integers() | safe_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(safe_text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_redaction_never_raises_mutates_or_copies_needlessly(value: Any) -> None:
    """Any JSON-like value: no exception, the input untouched, the same object when explain finds nothing."""
    snapshot = copy.deepcopy(value)
    scrubbed = DEFAULT.redact(value)
    findings = DEFAULT.explain(value)
    assert repr(value) == repr(snapshot)
    if not findings:
        assert scrubbed is value
    else:
        assert DEFAULT.redact(scrubbed) == scrubbed  # idempotent: nothing left to find


@settings(max_examples=120, deadline=None)
@given(safe_value)
def test_values_without_secrets_come_back_as_the_same_object(value: Any) -> None:
    """Built from words that cannot form a secret: redact returns the very object it got."""
    assert DEFAULT.redact(value) is value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.sampled_from(corpus()), st.text(max_size=30))
def test_a_provider_token_between_any_texts_is_cut(prefix: str, sample: Sample, suffix: str) -> None:
    """A planted shape is found wherever it sits, whatever surrounds it (with a space between)."""
    scrubbed = DEFAULT.text(f"{prefix} {sample.text} {suffix}")
    assert sample.secret not in scrubbed


# -- end to end: nothing reaches a file --------------------------------------------------


def raw_files(root: Path) -> bytes:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    return b"\x00".join(p.read_bytes() for p in files)


def check_disk(root: Path, found: dict[str, str], markers: list[str]) -> None:
    blob = raw_files(root)
    assert [m for m in markers if m.encode() not in blob] == [], "events never written: the test proves nothing"
    assert leaked(blob, found) == []


def emit_everywhere(log: AuditLog, samples: list[Sample], keyed: dict[str, str]) -> list[str]:
    """The corpus in metadata, proof, before, after and error_message, one event each."""
    markers = [f"marker-{field}-{secrets.token_hex(4)}" for field in ("md", "proof", "before", "after", "error")]
    emit: Callable[..., str] = log.emit
    emit(tenant_id="acme", action="corpus.metadata", metadata=planted(samples, keyed, markers[0]))
    emit(tenant_id="acme", action="corpus.proof",
         proof={"type": "api_response", "data": planted(samples, keyed, markers[1])})
    emit(tenant_id="acme", action="corpus.before", before=planted(samples, keyed, markers[2]))
    emit(tenant_id="acme", action="corpus.after", after=[planted(samples, keyed, markers[3])])
    emit(tenant_id="acme", action="corpus.error",
         error_message=markers[4] + "\n" + "\n".join(s.text for s in samples))
    return markers


def test_no_corpus_secret_reaches_any_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """DB, -wal, spool and quarantine bytes, open and closed, and the DEBUG log hold no corpus secret."""
    samples, keyed = corpus(), keyed_secrets()
    found = all_secrets(samples, keyed)
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool")
    try:
        with caplog.at_level(logging.DEBUG, logger="sealog.events"):
            markers = emit_everywhere(log, samples, keyed)
        assert log.flush()
        check_disk(tmp_path, found, markers)
    finally:
        log.close()
    check_disk(tmp_path, found, markers)
    records = [r for r in caplog.records if r.name == "sealog.events"]
    assert len(records) == 5
    assert leaked(repr([r.__dict__ for r in records]), found) == []


def test_no_corpus_secret_in_top_level_fields_reaches_any_file(tmp_path: Path) -> None:
    """user_agent, actor/target ids, request_id, error_code and source are scrubbed before disk too."""
    samples = corpus()
    found = {s.name: s.secret for s in samples}
    markers = []
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool") as log:
        for sample in samples:
            markers.append(f"marker-{secrets.token_hex(4)}")
            log.emit(tenant_id="acme", action="corpus.fields", actor=("user", sample.text),
                     target=("document", sample.text), user_agent=f"{markers[-1]} {sample.text}",
                     request_id=sample.text, error_code=sample.text, source=sample.text)
        assert log.flush()
        check_disk(tmp_path, found, markers)
    check_disk(tmp_path, found, markers)
