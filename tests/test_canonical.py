"""canonical.py is RFC 8785, byte for byte: checked against the reference implementation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sealog.canonical import canonical_value
from sealog.chain import GENESIS, seal
from sealog.event import CONTENT_FIELDS, Event

# Text that exercises escaping and the UTF-16 sort order: controls, quotes, the
# surrogate boundary (U+D7FF / U+E000..U+FFFF) and characters outside the BMP.
tricky_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\x1f", "\x7f", '"', "\\", "/", "\u2028", "\ud7ff", "\ue000",
                         "\uffff", "\U00010000", "\U0001f600"]),
    ),
    max_size=12,
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False), tricky_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(tricky_text, inner, max_size=4)),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=400)
def test_canonical_value_equals_rfc8785(value: Any) -> None:
    """Every JSON value encodes exactly as the rfc8785 package does."""
    assert canonical_value(value) == rfc8785.dumps(value)


def test_number_formatting_at_the_edges_matches_es6() -> None:
    """Floats where Python's repr and ES6 disagree: exponents, large integral values, -0."""
    from sealog.canonical import number

    edges = [0.0, -0.0, 1.0, 0.1, 1e-7, 1e-6, 1e-5, 123456789.125, 2.0**53, 2.0**53 + 2, 6.930638332278767e16,
             1e16, 1e20, 1e21, 1.5e300, 5e-324, -1.7976931348623157e308]
    for value in edges:
        assert number(value) == rfc8785.dumps(value), value


optional_text = st.one_of(st.none(), tricky_text)
events = st.builds(
    Event,
    event_id=tricky_text.filter(bool), tenant_id=tricky_text.filter(bool), action=st.just("a.b"),
    occurred_at=st.just("2026-01-02T03:04:05.123456Z"),
    outcome=st.sampled_from(["success", "failure", "partial", "pending"]),
    actor_type=optional_text, actor_id=optional_text, target_id=optional_text, source=optional_text,
    latency_ms=st.one_of(st.none(), st.floats(min_value=0, allow_nan=False, allow_infinity=False)),
    error_message=optional_text,
    metadata=st.dictionaries(tricky_text, json_values, max_size=4),
    proof=st.one_of(st.none(), st.fixed_dictionaries({"type": st.just("hash"), "hash": tricky_text})),
    before=json_values, after=json_values,
)


@given(events)
@settings(max_examples=200)
def test_sealed_hash_is_sha256_over_rfc8785_of_the_content_fields(event: Event) -> None:
    """The chain hashes RFC 8785 of every content field (nulls included), as the README says."""
    (sealed,) = seal([event], {})
    content = {name: getattr(event, name) for name in CONTENT_FIELDS}
    expected = hashlib.sha256(bytes(32) + rfc8785.dumps(content)).hexdigest()
    assert sealed.prev_hash == GENESIS
    assert sealed.hash == expected


GOLDEN = Path(__file__).parent / "data" / "golden_chain.jsonl"


def golden_events() -> list[Event]:
    return [msgspec.convert({k: v for k, v in json.loads(line).items()
                             if k not in ("seq", "prev_hash", "hash", "recorded_at")}, Event)
            for line in GOLDEN.read_text().splitlines()]


def test_golden_chain_reseals_to_the_recorded_hashes() -> None:
    """A change to sealing or canonical encoding cannot pass unnoticed: fixed inputs, fixed hashes."""
    recorded = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    sealed = seal(golden_events(), {})
    assert [(s.seq, s.prev_hash, s.hash) for s in sealed] == [
        (r["seq"], r["prev_hash"], r["hash"]) for r in recorded
    ]


def test_an_outsider_verifies_the_golden_export_with_hashlib_and_rfc8785_only() -> None:
    """The README's few lines re-verify an export without any sealog code."""
    prev = bytes(32)
    lines = GOLDEN.read_text().splitlines()
    assert len(lines) >= 5
    for line in lines:
        event = json.loads(line)
        content = {k: v for k, v in event.items() if k not in ("seq", "prev_hash", "hash", "recorded_at")}
        digest = hashlib.sha256(prev + rfc8785.dumps(content)).digest()
        assert event["prev_hash"] == prev.hex()
        assert event["hash"] == digest.hex()
        prev = digest
