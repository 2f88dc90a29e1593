"""canonical.py is RFC 8785, byte for byte: checked against the reference implementation,
and the sealed chain is pinned by golden vectors that an outsider can re-verify."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sealog._canonical import SORTED_FIELDS, canonical_event, canonical_row, canonical_value, number
from sealog._chain import GENESIS, SCALAR_FIELDS, seal
from sealog._event import CONTENT_FIELDS, JSON_FIELDS, SEAL_FIELDS, Event
from sealog.stores.sqlite import SQLiteStore

# Characters where a fast encoder and RFC 8785 part ways: escapes (controls, quote,
# backslash), characters JSON may leave raw (DEL, U+2028), the last code point below the
# surrogates (U+D7FF), the BMP above them (U+E000..U+FFFF, which sort AFTER non-BMP
# characters in UTF-16 order) and characters outside the BMP.
SPECIAL_CHARS = [chr(c) for c in range(0x20)] + [
    '"', "\\", "/", "\x7f", "\u2028", "\u2029", "\ud7fe", "\ud7ff", "\ue000", "\ue001", "\ufeff",
    "\ufffe", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff", "é", "a", "Z", "0",
]
tricky_text = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIAL_CHARS)), max_size=10
)
EDGE_FLOATS = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-7, 1e-6, 0.1, 1.0, 123456789.125,
               2.0**53, 2.0**53 + 2, 1e16, 1e21, 1e22, 1.7976931348623157e308, -1.7976931348623157e308]
finite_floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(EDGE_FLOATS))
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    finite_floats, tricky_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(tricky_text, inner, max_size=5)),
    max_leaves=25,
)


@given(json_values)
@settings(max_examples=500, deadline=None)
def test_canonical_value_equals_rfc8785_for_any_json_value(value: Any) -> None:
    """Every JSON value (tricky keys and strings, extreme floats, deep nesting) encodes as rfc8785 does."""
    assert canonical_value(value) == rfc8785.dumps(value)


@given(st.dictionaries(tricky_text, json_scalars, min_size=2, max_size=8))
@settings(max_examples=300, deadline=None)
def test_object_keys_sort_by_utf16_code_units(value: dict[str, Any]) -> None:
    """Keys mixing BMP-above-surrogate and non-BMP characters sort as RFC 8785 says (UTF-16 order)."""
    assert canonical_value(value) == rfc8785.dumps(value)
    assert canonical_value({"\uffff": 1, "\U0001f600": 2}) == rfc8785.dumps({"\U0001f600": 2, "\uffff": 1})


def test_number_formatting_at_the_edges_matches_es6() -> None:
    """Floats where Python's repr and ES6 disagree: exponents, large integral values, -0, subnormals."""
    for value in EDGE_FLOATS:
        assert number(value) == rfc8785.dumps(value), value


optional_text = st.one_of(st.none(), tricky_text)
# One strategy per content field: every field the hash covers is exercised, None included.
EVENT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "event_id": tricky_text.filter(bool), "tenant_id": st.sampled_from(["acme", "globex", "\U0001f600"]),
    "action": tricky_text.filter(bool),
    "occurred_at": tricky_text, "outcome": st.sampled_from(["success", "failure", "partial", "pending"]),
    **dict.fromkeys((
        "actor_type", "actor_id", "target_type", "target_id", "ip_address", "user_agent", "request_id",
        "correlation_id", "span_id", "parent_event_id", "source", "error_code", "error_message"), optional_text),
    "latency_ms": st.one_of(st.none(), st.floats(min_value=0, allow_nan=False, allow_infinity=False),
                            st.sampled_from([f for f in EDGE_FLOATS if f >= 0])),
    "metadata": st.dictionaries(tricky_text, json_values, max_size=4),
    "proof": st.one_of(st.none(), st.dictionaries(tricky_text, json_values, max_size=3).map(
        lambda extra: {**extra, "type": "api_response"})),
    "before": json_values, "after": json_values,
}
events = st.builds(Event, **EVENT_FIELDS)


def test_the_event_strategy_covers_every_content_field() -> None:
    """A new content field cannot escape the property tests below."""
    assert set(EVENT_FIELDS) == set(CONTENT_FIELDS)
    assert set(CONTENT_FIELDS) | set(SEAL_FIELDS) == set(Event.__struct_fields__)


def content_of(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in CONTENT_FIELDS}


@given(events)
@settings(max_examples=200, deadline=None)
def test_canonical_event_equals_rfc8785_of_every_content_field(event: Event) -> None:
    """The chain's canonical encoding is RFC 8785 of all content fields, nulls kept, seal fields left out."""
    expected = rfc8785.dumps(content_of(event))
    scalars = {name: getattr(event, name) for name in SCALAR_FIELDS}
    raw = {name: canonical_value(getattr(event, name)) for name in JSON_FIELDS}
    assert canonical_event(scalars, raw) == expected
    # The stores' fast path: values in sorted column order, JSON columns already canonical.
    row = [raw[name] if name in raw else getattr(event, name) for name in SORTED_FIELDS]
    assert canonical_row(row) == expected
    assert set(json.loads(expected)) == set(CONTENT_FIELDS)


@given(st.lists(events, min_size=1, max_size=3))
@settings(max_examples=100, deadline=None)
def test_seal_hashes_sha256_of_prev_hash_bytes_and_rfc8785_content(batch: list[Event]) -> None:
    """seal() computes hash = SHA-256(prev_hash bytes || RFC 8785(content)), linked per tenant."""
    prev: dict[str, bytes] = {}
    for sealed in seal(batch, {}):
        before = prev.get(sealed.event.tenant_id, bytes(32))
        digest = hashlib.sha256(before + rfc8785.dumps(content_of(sealed.event))).digest()
        assert sealed.prev_hash == before.hex()
        assert sealed.hash == digest.hex()
        prev[sealed.event.tenant_id] = digest


# -- golden vectors ------------------------------------------------------------------

GOLDEN = Path(__file__).parent / "data" / "golden_chain.jsonl"


def golden_lines() -> list[bytes]:
    # Split on b"\n" only: str.splitlines() would also split at the raw U+2028 in a string value.
    return [line for line in GOLDEN.read_bytes().split(b"\n") if line]


def golden_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in golden_lines()]


def golden_events() -> list[Event]:
    return [msgspec.convert({k: v for k, v in r.items() if k not in SEAL_FIELDS}, Event)
            for r in golden_records()]


def test_golden_chain_reseals_to_the_recorded_hashes() -> None:
    """A change to sealing or canonical encoding cannot pass unnoticed: fixed inputs, fixed hashes."""
    records = golden_records()
    assert len({r["tenant_id"] for r in records}) == 2  # two interleaved chains
    sealed = seal(golden_events(), {})
    assert [(s.event.tenant_id, s.seq, s.prev_hash, s.hash) for s in sealed] == [
        (r["tenant_id"], r["seq"], r["prev_hash"], r["hash"]) for r in records
    ]


def test_golden_chain_stored_in_sqlite_keeps_its_hashes_and_verifies(tmp_path: Path) -> None:
    """The SQLite store seals the golden events to the recorded hashes and re-verifies its own columns."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'golden.db'}")
    try:
        store.migrate()
        assert store.write(golden_events()) == len(golden_records())
        stored = {e.event_id: e for t in ("acme", "globex") for e in store.iter_events(t)}
        for record in golden_records():
            event = stored[record["event_id"]]
            assert (event.seq, event.prev_hash, event.hash) == (record["seq"], record["prev_hash"], record["hash"])
        report = store.verify()
        assert report.ok
        assert report.checked == len(golden_records())
    finally:
        store.close()


def test_an_outsider_verifies_the_golden_export_with_hashlib_and_rfc8785_only() -> None:
    """The rule in chain.py's docstring, written with no sealog code, re-verifies an export."""
    heads: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    lines = [line for line in GOLDEN.read_bytes().split(b"\n") if line]
    assert len(lines) >= 5
    for line in lines:
        record = json.loads(line)
        tenant = record["tenant_id"]
        content = {k: v for k, v in record.items() if k not in ("seq", "prev_hash", "hash", "recorded_at")}
        prev = heads.get(tenant, bytes(32))
        digest = hashlib.sha256(prev + rfc8785.dumps(content)).digest()
        assert record["prev_hash"] == prev.hex()
        assert record["hash"] == digest.hex()
        counts[tenant] = counts.get(tenant, 0) + 1
        assert record["seq"] == counts[tenant]  # gap-free, 1-based, per tenant
        heads[tenant] = digest
    assert bytes(32).hex() == GENESIS  # the docstring's "32 zero bytes"
