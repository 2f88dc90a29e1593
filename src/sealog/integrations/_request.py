"""Request context shared by the ASGI, WSGI and Django middleware.

The rules live here once: which client IP to believe (X-Forwarded-For only through
trusted proxies), which request id to keep, and when a W3C ``traceparent`` correlates.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from uuid_utils import uuid7

from .._event import MAX_USER_AGENT
from .._prepare import pair

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CACHE_SIZE: Final = 4096

# A client may send anything: keep its request id only when it is short, visible ASCII.
_REQUEST_ID: Final = re.compile(r"[!-~]{1,128}")
# W3C Trace Context: version-traceid-parentid-flags; version ff is invalid, and a future
# version may append fields after the flags.
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16


def _load_span_active() -> Callable[[], bool]:
    try:
        from opentelemetry import trace
    except ImportError:
        return lambda: False

    def span_active() -> bool:
        return trace.get_current_span().get_span_context().is_valid

    return span_active


span_active = _load_span_active()
"""True when an OpenTelemetry span is current: then its trace id is the correlation, not ours."""


def parse_ip(text: str) -> IPAddress | None:
    """An address from a peer or a forwarded hop: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; IPv6 has at least two colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])  # drop an IPv6 zone id
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """Trusted proxies as networks; a bare IP is a /32 (or /128). Bad entries raise ValueError."""
    if isinstance(specs, str):
        specs = (specs,)
    return tuple(ipaddress.ip_network(spec.strip(), strict=False) for spec in specs)


class ClientIP:
    """Picks the client address: the peer, or through trusted proxies the nearest untrusted hop.

    A client can write any X-Forwarded-For it likes; only hops appended by proxies we trust
    mean anything. So the header is read only when the peer is trusted, from the right,
    skipping trusted proxies, and the first other hop is the client.
    """

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.networks = parse_networks(trusted_proxies)
        # Peers and proxy chains repeat from request to request, and parsing addresses costs
        # microseconds: remember recent answers (bounded, so varied headers cannot grow it).
        self.cached = functools.lru_cache(maxsize=CACHE_SIZE)(self.pick)

    def trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def __call__(self, peer: str | None, forwarded_for: str | None) -> str | None:
        return self.cached(peer, forwarded_for)

    def pick(self, peer: str | None, forwarded_for: str | None) -> str | None:
        address = None if peer is None else parse_ip(peer)
        if address is None:
            return None
        if not forwarded_for or not self.networks or not self.trusted(address):
            return str(address)
        for hop in reversed(forwarded_for.split(",")):
            parsed = parse_ip(hop)
            if parsed is None:  # garbage from beyond our proxies: stop at the last one we trust
                return str(address)
            address = parsed
            if not self.trusted(address):
                return str(address)
        return str(address)  # every hop is a trusted proxy: the farthest one


def request_id(header: str | None) -> str:
    """The caller's request id when it is sane, else a new UUIDv7."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return str(uuid7())


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a valid W3C ``traceparent`` header, unless an OpenTelemetry span is active."""
    if not traceparent:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace, parent, _, rest = match.groups()
    if version == "ff" or trace == _ZERO_TRACE or parent == _ZERO_SPAN or (version == "00" and rest):
        return None
    return None if span_active() else trace


Pair = tuple[str, str]


class RequestFields:
    """Builds the context fields of one request from its peer and headers.

    One instance per middleware: the trusted networks are parsed once.
    """

    def __init__(self, trusted_proxies: Iterable[str] = (), request_id_header: str = "x-request-id") -> None:
        self.client_ip = ClientIP(trusted_proxies)
        self.header = request_id_header.lower()
        self.environ_key = "HTTP_" + self.header.upper().replace("-", "_")

    def build(self, peer: str | None, request_header: str | None, forwarded_for: str | None,
              user_agent: str | None, traceparent: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {"request_id": request_id(request_header)}
        if (ip := self.client_ip(peer, forwarded_for)) is not None:
            fields["ip_address"] = ip
        if user_agent:
            fields["user_agent"] = user_agent[:MAX_USER_AGENT]
        if (trace := trace_id(traceparent)) is not None:
            fields["correlation_id"] = trace
        return fields

    def from_environ(self, environ: Mapping[str, Any]) -> dict[str, Any]:
        """Fields from a WSGI environ (Django's ``request.META`` has the same keys)."""
        return self.build(environ.get("REMOTE_ADDR"), environ.get(self.environ_key),
                          environ.get("HTTP_X_FORWARDED_FOR"), environ.get("HTTP_USER_AGENT"),
                          environ.get("HTTP_TRACEPARENT"))


def add_identity(fields: dict[str, Any], tenant: str | None, actor: Pair | None) -> dict[str, Any]:
    """Adds what the tenant and actor callables returned; None leaves the field to the app.

    The actor is unpacked here (a bad pair raises InvalidEvent at once, naming ``actor``),
    so the middleware can bind the context directly: every emit checks what it brings.
    """
    if tenant is not None:
        fields["tenant_id"] = tenant
    if actor is not None:
        fields["actor_type"], fields["actor_id"] = pair("actor", actor)
    return fields
