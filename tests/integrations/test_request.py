"""The request-context rules shared by every middleware: client IP, request id, traceparent."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider

from sealog.integrations._request import ClientIP, RequestFields, request_id, trace_id

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def test_the_peer_is_the_client_when_no_proxy_is_trusted() -> None:
    """Without trusted proxies X-Forwarded-For is the client's claim and is ignored."""
    pick = ClientIP()
    assert pick("198.51.100.7", "1.2.3.4") == "198.51.100.7"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    """A peer outside the trusted networks cannot choose the recorded IP by sending the header."""
    pick = ClientIP(["10.0.0.0/8"])
    assert pick("198.51.100.7", "1.2.3.4, 10.0.0.1") == "198.51.100.7"


def test_through_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() -> None:
    """Hops are read from the right, skipping trusted proxies; a spoofed left-most hop is not believed."""
    pick = ClientIP(["10.0.0.0/8", "192.0.2.1"])
    assert pick("10.1.2.3", "6.6.6.6, 203.0.113.9, 192.0.2.1, 10.0.0.7") == "203.0.113.9"
    assert pick("10.1.2.3", "203.0.113.9:4711") == "203.0.113.9"  # a port appended by some proxies
    assert pick("10.1.2.3", "[2001:db8::1]:443") == "2001:db8::1"


def test_garbage_in_forwarded_for_stops_at_the_last_trusted_proxy() -> None:
    """A hop that is not an IP cannot be vouched for: the nearest trusted proxy is recorded instead."""
    pick = ClientIP(["10.0.0.0/8"])
    assert pick("10.0.0.2", "203.0.113.9, unknown, 10.0.0.9") == "10.0.0.9"
    assert pick("10.0.0.2", "10.0.0.8, 10.0.0.9") == "10.0.0.8"  # all trusted: the farthest one


def test_peer_forms_are_normalised_and_non_ip_peers_give_no_address() -> None:
    """IPv4-mapped IPv6 peers match IPv4 networks; a unix socket or a test client name is no IP."""
    pick = ClientIP(["10.0.0.0/8"])
    assert pick("::ffff:10.0.0.2", "203.0.113.9") == "203.0.113.9"
    assert pick("testclient", "203.0.113.9") is None
    assert pick(None, "203.0.113.9") is None


def test_bad_trusted_proxy_entries_are_refused_at_setup() -> None:
    """A typo in trusted_proxies fails at startup, not silently on every request."""
    with pytest.raises(ValueError, match="does not appear to be"):
        ClientIP(["10.0.0.0/8", "not-a-network"])


def test_request_id_is_kept_when_sane_and_replaced_otherwise() -> None:
    """Short visible-ASCII ids are kept; missing, long or spaced ones get a new UUIDv7."""
    assert request_id("req-42") == "req-42"
    for bad in (None, "", "x" * 129, "has space", "caf\u00e9"):
        fresh = request_id(bad)
        assert uuid.UUID(fresh).version == 7


def test_traceparent_gives_its_trace_id_only_when_valid() -> None:
    """The W3C rules: version ff, all-zero ids, wrong lengths or a v00 with extra fields are invalid."""
    assert trace_id(PARENT) == TRACE
    assert trace_id(f"01-{TRACE}-00f067aa0ba902b7-01-future") == TRACE
    for bad in (None, "", f"ff-{TRACE}-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01",
                f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE.upper()}-00f067aa0ba902b7-01",
                f"00-{TRACE}-00f067aa0ba902b7-01-extra", "00-abc-def-01"):
        assert trace_id(bad) is None, bad


def test_an_active_opentelemetry_span_wins_over_traceparent() -> None:
    """When a span is current its trace is the correlation, so the header's trace id is not bound."""
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("outer"):
        assert trace_id(PARENT) is None
    assert trace_id(PARENT) == TRACE


def test_fields_from_a_wsgi_environ() -> None:
    """The environ keys map to the context fields; a long user agent is cut to the event's limit."""
    fields = RequestFields(["127.0.0.1"], "x-correlation").from_environ({
        "REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9", "HTTP_X_CORRELATION": "abc",
        "HTTP_USER_AGENT": "u" * 5000, "HTTP_TRACEPARENT": PARENT})
    assert fields == {"request_id": "abc", "ip_address": "203.0.113.9", "user_agent": "u" * 4096,
                      "correlation_id": TRACE}
