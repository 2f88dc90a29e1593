"""AuditLog: the one object users hold. It wires context, redaction, spool, writer, sink."""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from . import _context as context
from . import _patterns as patterns
from . import _timefmt as timefmt
from ._chain import VerifyReport
from ._errors import InvalidEvent, InvalidQuery, SealogError
from ._event import Event, check_metadata, check_outcome, check_tenant
from ._prepare import CONTEXT_FIELDS, Preparer, pair
from ._redact import DEFAULT as DEFAULT_REDACTOR
from ._redact import Redactor
from ._sinks import LineSink, LocalSink, ProcessSink
from ._spool import FullPolicy, Spool, spool_target
from ._writer import Writer
from .stores import Page, Query, Store, open_store
from .stores.base import TreeStore

if TYPE_CHECKING:
    from ._builder import EventBuilder
    from ._prune import PruneResult

log = logging.getLogger("sealog")
event_log = logging.getLogger("sealog.events")

DEFAULT_URL: Final = "sqlite:///sealog.db"
WriterMode = Literal["process", "thread"]
F = TypeVar("F", bound=Callable[..., Any])
_CACHE_LIMIT: Final = 10_000
_BINDABLE: Final = frozenset({*CONTEXT_FIELDS, "metadata"})
TimeBound = str | datetime | timedelta
"""A query bound: an aware datetime, a timedelta back from now, RFC 3339 text or a span (``2h``)."""


def resolve_url(url: str | None) -> str:
    return url or os.environ.get("SEALOG_URL") or DEFAULT_URL


def default_spool_dir(url: str) -> Path:
    if env := os.environ.get("SEALOG_SPOOL_DIR"):
        return Path(env)
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///") + ".spool")
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "sealog" / f"spool-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def _events_per_message(given: int | None) -> int:
    """The broker's events per message: the argument, else ``SEALOG_EVENTS_PER_MESSAGE``, else 1."""
    from .broker.publisher import check_events_per_message

    if given is not None:
        return check_events_per_message(given)
    text = os.environ.get("SEALOG_EVENTS_PER_MESSAGE", "1").strip()
    try:
        return check_events_per_message(int(text))
    except ValueError:
        raise ValueError(f"SEALOG_EVENTS_PER_MESSAGE={text!r}: a whole number from 1 to 1000") from None


class AuditLog(AbstractContextManager["AuditLog"]):
    """Records audit events durably and cheaply; see the README for the whole API."""

    def __init__(
        self,
        url: str | None = None,
        *,
        store: Store | None = None,
        broker: str | None = None,
        exchange: str = "sealog.events",
        events_per_message: int | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        source: str | None = None,
        redactor: Redactor = DEFAULT_REDACTOR,
        migrate: bool = True,
        max_spool_bytes: int = 1 << 30,
        spool_full: FullPolicy = "block",
        spool_timeout: float = 5.0,
        writer: WriterMode | None = None,
        signing_key: str | os.PathLike[str] | None = None,
        checkpoint_every: float = 60.0,
    ) -> None:
        self.url = store.url if store is not None else resolve_url(url)
        self.store: Store | None = store
        broker = broker or os.environ.get("SEALOG_BROKER_URL")
        per_message = _events_per_message(events_per_message) if broker else 1
        in_process = store is not None or self.url.startswith("memory:")
        mode = writer or os.environ.get("SEALOG_WRITER") or ("thread" if in_process else "process")
        if mode not in ("process", "thread"):
            raise ValueError(f"writer must be 'process' or 'thread', not {mode!r}")
        if in_process and mode == "process":
            raise ValueError("an in-memory store lives in this process, where a writer process cannot "
                             "reach it: use writer='thread'")
        if self.store is None and (not broker or url or os.environ.get("SEALOG_URL")):
            self.store = open_store(self.url)  # opens lazily: reads, and the thread writer
        sink: LineSink
        if mode == "process":
            sink = ProcessSink(["broker", broker, exchange, str(per_message)] if broker else ["store", self.url])
        elif broker:
            from .broker.publisher import Publisher

            sink = Publisher(broker, exchange=exchange, events_per_message=per_message)
        else:
            assert self.store is not None
            sink = LocalSink(self.store)
        self.source = source
        self.redactor = redactor
        self._preparer = Preparer(redactor, source)
        directory = spool_dir or default_spool_dir(broker or self.url)
        target = spool_target(broker, exchange) if broker else spool_target(self.url)
        self.spool = Spool(directory, target=target, max_bytes=max_spool_bytes, full_policy=spool_full,
                           full_timeout=spool_timeout)
        self._sink = sink
        self._migrate = migrate
        self._writer = Writer(self.spool, sink, migrate=migrate)
        self._closed = False
        self._close_lock = threading.Lock()
        atexit.register(self.close)
        # Signed checkpoints: with a key (signing_key, else SEALOG_SIGNING_KEY), every tenant
        # that grew is signed at most every checkpoint_every seconds, by a thread of this process.
        from ._checkpoints import Checkpoints

        self._checkpoints = Checkpoints.configure(signing_key, checkpoint_every)
        if self._checkpoints.signer is not None and isinstance(self.store, TreeStore):
            self._checkpoints.start(self, self.store, lambda log: not log._closed)

    # -- emitting --------------------------------------------------------------------

    def emit(
        self,
        *,
        tenant_id: str | None = None,
        action: str | None = None,
        actor: tuple[str, str] | None = None,
        target: tuple[str, str] | None = None,
        outcome: str = "success",
        actor_type: str | None = None,
        actor_id: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
        span_id: str | None = None,
        parent_event_id: str | None = None,
        source: str | None = None,
        latency_ms: float | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        metadata: dict[str, Any] | None = None,
        proof: dict[str, Any] | None = None,
        before: Any = None,
        after: Any = None,
        occurred_at: Any = None,
        event_id: str | None = None,
    ) -> str:
        """Record one event; returns its event_id once it is in the durable spool.

        Raises InvalidEvent for the caller's mistakes only; storage trouble is retried
        in the background and never raised here.
        """
        # Positional, in Preparer.line's order: 25 keywords would cost a name search each.
        fields, line = self._preparer.line(
            tenant_id, action, actor, target, outcome, actor_type, actor_id, target_type, target_id,
            ip_address, user_agent, request_id, correlation_id, span_id, parent_event_id, source,
            latency_ms, error_code, error_message, metadata, proof, before, after, occurred_at, event_id,
        )
        if self._closed:
            raise SealogError("this AuditLog is closed")
        self.spool.append(line)
        self._writer.notify()
        if event_log.isEnabledFor(logging.DEBUG):
            event = Event(**fields)
            event_log.debug("%s %s", event.action, event.event_id,
                            extra={"sealog_event": event.to_dict()})
        return fields["event_id"]  # type: ignore[no-any-return]

    def validate_batch(self, batch: list[dict[str, Any]]) -> list[tuple[Event, bytes] | InvalidEvent]:
        """Each event prepared as emit would (no context: it came from outside), not spooled."""
        results: list[tuple[Event, bytes] | InvalidEvent] = []
        for index, fields in enumerate(batch):
            try:
                results.append(self._preparer.prepare_fields(fields))
            except InvalidEvent as exc:
                results.append(exc.at(index))
        return results

    def spool_prepared(self, prepared: list[tuple[Event, bytes]]) -> list[str]:
        """Spool events that validate_batch accepted; returns their ids once all are durable."""
        if self._closed:
            raise SealogError("this AuditLog is closed")
        for _, line in prepared:
            self.spool.append(line)
        self._writer.notify()
        return [event.event_id for event, _ in prepared]

    def spool_all(self, prepared: list[tuple[Event, bytes]]) -> list[str]:
        """``spool_prepared`` all or nothing: SpoolFull means none of the batch was spooled."""
        if self._closed:
            raise SealogError("this AuditLog is closed")
        self.spool.append_all([line for _, line in prepared])
        self._writer.notify()
        return [event.event_id for event, _ in prepared]

    def event(self, tenant_id: str | None = None) -> EventBuilder:
        """A fresh fluent builder for one event (never shared: safe across threads)."""
        from ._builder import EventBuilder

        return EventBuilder(self, tenant_id)

    def context(self, **fields: Any) -> AbstractContextManager[dict[str, Any]]:
        """Fields for every emit inside the block (threads and asyncio tasks see their own)."""
        if "actor" in fields:
            fields["actor_type"], fields["actor_id"] = pair("actor", fields.pop("actor"))
        if "target" in fields:
            fields["target_type"], fields["target_id"] = pair("target", fields.pop("target"))
        unknown = fields.keys() - _BINDABLE
        if unknown:
            raise InvalidEvent(sorted(unknown)[0], "not a field the context can carry")
        if fields.get("metadata") is not None:
            check_metadata(fields["metadata"])  # its contents are checked and redacted at each emit
        return context.bind(**fields)

    def audited(self, action: str, **fields: Any) -> Callable[[F], F]:
        """Decorate a function so each call emits ``action`` with outcome and latency."""
        from ._audited import audited

        return audited(self, action, **fields)

    # helpers: thin, so the field mapping lives in one place (helpers.py)
    def login(self, tenant_id: str, user_id: str, **kw: Any) -> str:
        from ._helpers import login

        return login(self, tenant_id, user_id, **kw)

    def logout(self, tenant_id: str, user_id: str, **kw: Any) -> str:
        from ._helpers import logout

        return logout(self, tenant_id, user_id, **kw)

    def data_export(self, tenant_id: str, actor_id: str, **kw: Any) -> str:
        from ._helpers import data_export

        return data_export(self, tenant_id, actor_id, **kw)

    def data_deletion(self, tenant_id: str, actor_id: str, **kw: Any) -> str:
        from ._helpers import data_deletion

        return data_deletion(self, tenant_id, actor_id, **kw)

    def settings_change(self, tenant_id: str, actor_id: str, setting: str,
                        before: Any, after: Any, **kw: Any) -> str:
        from ._helpers import settings_change

        return settings_change(self, tenant_id, actor_id, setting, before, after, **kw)

    # -- delivery --------------------------------------------------------------------

    def flush(self, timeout: float | None = 5.0) -> bool:
        """True when everything emitted so far (and any dead process's spool) is stored.

        False while a dead process's spool cannot be read (``stats()["orphan_problems"]``):
        its events are not stored, so saying True would be a lie.
        """
        return self._writer.flush(timeout, self.spool.appended) and not self.spool.orphan_problems

    def close(self, timeout: float = 10.0) -> bool:
        """Drain and release; idempotent. What cannot be drained stays in the spool."""
        with self._close_lock:
            if self._closed:
                return True
            self._closed = True
        atexit.unregister(self.close)
        drained = self._writer.stop(timeout)
        self.spool.close()
        self._sink.close()
        shared = isinstance(self._sink, LocalSink) and self._sink.sink is self.store
        if self.store is not None and not shared:
            self.store.close()
        return drained

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Delivery counters: nothing is lost silently, so every failure is counted here."""
        writer = self._writer.stats
        return {
            "emitted": self.spool.appended,
            "stored": writer.stored,
            "duplicates": writer.duplicates,
            "backlog": self.spool.appended - self._writer.delivered,
            "spool_bytes": self.spool.bytes,
            "retries": writer.retries,
            "errors": writer.errors,
            "quarantined": writer.quarantined,
            "recovered_spools": writer.recovered,
            "orphan_problems": dict(self.spool.orphan_problems),
            "outage": self._writer.outage,
            "last_error": writer.last_error,
            "last_write_ms": round(writer.last_write_ms, 3),
        }

    # -- reading ---------------------------------------------------------------------

    def _reader(self) -> Store:
        if self.store is None:
            raise SealogError("this AuditLog publishes to a broker and has no store to read")
        return self.store

    def query(
        self,
        tenant_id: str,
        action: str | None = None,
        actor_id: str | None = None,
        target_id: str | None = None,
        outcome: str | None = None,
        since: TimeBound | None = None,
        until: TimeBound | None = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page:
        """One page of a tenant's events, newest first; pass ``page.next`` as ``after``."""
        return self._reader().query(make_query(
            tenant_id, action=action, actor_id=actor_id, target_id=target_id, outcome=outcome,
            since=since, until=until, request_id=request_id, correlation_id=correlation_id,
            limit=limit, after=after,
        ))

    def get(self, tenant_id: str, event_id: str) -> Event | None:
        return self._reader().get(tenant_id, event_id)

    def iter_events(self, tenant_id: str, after_seq: int = 0) -> Iterator[Event]:
        return self._reader().iter_events(tenant_id, after_seq)

    def verify(self, tenant_id: str | None = None, progress: Callable[[int], None] | None = None, *,
               incremental: bool = False, sample: int = 0, jobs: int | None = 1) -> VerifyReport:
        """Re-hash the chains (see Store.verify for the options); never raises for what it finds."""
        return self._reader().verify(tenant_id, progress, incremental=incremental, sample=sample, jobs=jobs)

    # -- the verifiable log (see _checkpoints) -----------------------------------------

    def _tree(self) -> TreeStore:
        store = self._reader()
        if not isinstance(store, TreeStore):
            raise SealogError(f"the store {type(store).__name__} keeps no Merkle tree")
        return store

    def checkpoint(self, tenant_id: str) -> str:
        """The tenant's latest signed checkpoint (C2SP note), signing a new one when the tree grew and a key is set."""
        return self._checkpoints.checkpoint(self._tree(), tenant_id)

    def inclusion_proof(self, tenant_id: str, event_id: str, tree_size: int | None = None) -> dict[str, Any]:
        """``{"leaf_index", "tree_size", "hashes"}`` (base64, RFC 9162 order); size: the latest checkpoint's."""
        return self._checkpoints.inclusion_proof(self._tree(), tenant_id, event_id, tree_size)

    def consistency_proof(self, tenant_id: str, first: int, second: int) -> dict[str, Any]:
        """``{"first", "second", "hashes"}``: the tree of ``second`` events extends that of ``first``."""
        return self._checkpoints.consistency_proof(self._tree(), tenant_id, first, second)

    def receipt(self, tenant_id: str, event_id: str) -> str | None:
        """The event's offline proof (C2SP tlog-proof); None when no checkpoint covers it and no key is set."""
        return self._checkpoints.receipt(self._tree(), tenant_id, event_id)

    def prune(self, tenant_id: str, before: TimeBound) -> PruneResult:
        """Remove the tenant's events that occurred before ``before``, keeping what verification and proofs need.

        The prune is recorded as a ``sealog.prune`` event in the tenant's chain; see ``sealog._prune``.
        """
        from ._prune import prune

        return prune(self._tree(), tenant_id, before, self._checkpoints)


def make_query(tenant_id: str, *, since: TimeBound | None = None, until: TimeBound | None = None,
               action: str | None = None, outcome: str | None = None, limit: int = 100,
               **rest: str | None) -> Query:
    """Check and normalise query arguments; InvalidQuery names what is wrong."""
    try:
        check_tenant(tenant_id)
        if outcome is not None:
            check_outcome(outcome)
    except InvalidEvent as exc:
        raise InvalidQuery(str(exc)) from None
    if action is not None:
        if not isinstance(action, str):
            raise InvalidQuery(f"action: a pattern is text, not {type(action).__name__}")
        patterns.check(action)
    for name, value in rest.items():
        if value is not None and not isinstance(value, str):
            raise InvalidQuery(f"{name}: must be text, not {type(value).__name__}")
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidQuery(f"limit: must be a whole number, not {type(limit).__name__}")
    bounds: dict[str, Any] = {}
    for name, bound in (("since", since), ("until", until)):
        if bound is not None:
            try:
                bounds[name] = timefmt.parse_when(bound)
            except ValueError as exc:
                raise InvalidQuery(f"{name}: {exc}") from None
    return Query(tenant_id=tenant_id, action=action, outcome=outcome, limit=limit, **bounds, **rest)
