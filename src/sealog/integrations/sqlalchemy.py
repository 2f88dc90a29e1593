"""SQLAlchemy 2.x: ORM changes become audit events when, and only when, the transaction commits.

``after_flush`` records each inserted, updated and deleted row (changed columns only; old
values the session no longer holds, expired by a commit, are read in ``before_flush``),
``do_orm_execute`` records ORM-enabled bulk ``update()``/``delete()`` statements with their
row count. Events wait on the transaction (a savepoint's events join its parent when it is
released, vanish when it is rolled back) and are emitted from ``after_commit``, each in the
context that was current when the change was flushed.
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Result
from sqlalchemy.orm import InstanceState, Mapper, ORMExecuteState, Session, SessionTransaction, sessionmaker

from sealog import AuditLog, get_default

from ._values import action_part, jsonable, pk_text

_report = logging.getLogger("sealog")
Tenant = str | Callable[[Session], str | None] | None
Pending = list[tuple[contextvars.Context, dict[str, Any]]]
_tracked: weakref.WeakSet[Any] = weakref.WeakSet()


def track(session_or_sessionmaker: Any, log: AuditLog | None = None, models: Iterable[type] | None = None,
          tenant: Tenant = None) -> None:
    """Audit ORM changes made through a Session, sessionmaker, Session class, AsyncSession or async_sessionmaker.

    ``models``: only these mapped classes (and their subclasses); default every one.
    ``tenant``: a string, or ``tenant(session) -> str | None``; else the bound context's tenant.
    ``log=None`` means ``sealog.get_default()``, looked up at each commit.
    """
    target = _event_target(session_or_sessionmaker)
    if target in _tracked:
        raise ValueError(f"{session_or_sessionmaker!r} is already tracked")
    _tracked.add(target)
    tracker = _Tracker(log, None if models is None else tuple(models), tenant)
    event.listen(target, "before_flush", tracker.before_flush)
    event.listen(target, "after_flush", tracker.after_flush)
    event.listen(target, "do_orm_execute", tracker.do_orm_execute)
    event.listen(target, "after_commit", tracker.after_commit)
    event.listen(target, "after_transaction_end", tracker.after_transaction_end)


def _event_target(target: Any) -> Any:
    """What SQLAlchemy's session events can listen to: the sync side of the asyncio wrappers."""
    try:
        from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    except ImportError:  # no asyncio support installed: then the target is not one of those
        AsyncSession = async_sessionmaker = type(None)  # type: ignore[misc,assignment]
    if isinstance(target, AsyncSession):
        return target.sync_session
    if isinstance(target, async_sessionmaker):
        base = target.kw.get("sync_session_class", Session)
        tracked = type(f"Tracked{base.__name__}", (base,), {})  # events on this maker's sessions only
        target.configure(sync_session_class=tracked)
        return tracked
    if isinstance(target, Session | sessionmaker) or (isinstance(target, type) and issubclass(target, Session)):
        return target
    raise TypeError(f"track() takes a Session, sessionmaker or their asyncio forms, not {type(target).__name__}")


class _Tracker:
    def __init__(self, log: AuditLog | None, models: tuple[type, ...] | None, tenant: Tenant) -> None:
        self.log = log
        self.models = models
        self.tenant = tenant

    def wanted(self, mapper: Mapper[Any]) -> bool:
        return self.models is None or issubclass(mapper.class_, self.models)

    # -- recording ---------------------------------------------------------------------

    def pending(self, session: Session) -> dict[SessionTransaction, Pending]:
        found: dict[SessionTransaction, Pending] = session.info.setdefault(self, {})
        return found

    def record(self, session: Session, changes: list[dict[str, Any]]) -> None:
        if not changes:
            return
        tenant = self.tenant(session) if callable(self.tenant) else self.tenant
        ctx = contextvars.copy_context()
        transaction = session.get_nested_transaction() or session.get_transaction()
        assert transaction is not None  # a flush or statement always runs in one
        queue = self.pending(session).setdefault(transaction, [])
        for change in changes:
            if tenant is not None:
                change["tenant_id"] = tenant
            queue.append((ctx, change))

    def before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        """Read the old values the session does not hold (expired after a commit) before they are overwritten."""
        old: dict[InstanceState[Any], dict[str, Any]] = {}
        for obj in session.dirty:
            state = inspect(obj)
            if state.identity is not None and self.wanted(state.mapper):
                unknown = [a.key for a in state.mapper.column_attrs
                           if state.attrs[a.key].history.added and not state.attrs[a.key].history.deleted]
                if unknown:
                    old[state] = _fetch(session, state, unknown)
        for obj in session.deleted:
            state = inspect(obj)
            if state.identity is not None and self.wanted(state.mapper):
                unknown = [a.key for a in state.mapper.column_attrs if a.key not in state.dict]
                if unknown:
                    old[state] = _fetch(session, state, unknown)
        session.info[(self, "old")] = old

    def after_flush(self, session: Session, flush_context: Any) -> None:
        old = session.info.pop((self, "old"), {})
        changes = []
        for obj in session.new:
            state = inspect(obj)
            if self.wanted(state.mapper):
                changes.append(_row_event(state, "create", None, _values(state)))
        for obj in session.dirty:
            state = inspect(obj)
            if self.wanted(state.mapper):
                before, after = _diff(state, old.get(state, {}))
                if before or after:
                    changes.append(_row_event(state, "update", before, after))
        for obj in session.deleted:
            state = inspect(obj)
            if self.wanted(state.mapper):
                changes.append(_row_event(state, "delete", {**_values(state), **old.get(state, {})}, None))
        self.record(session, changes)

    def do_orm_execute(self, state: ORMExecuteState) -> Result[Any] | None:
        if not (state.is_update or state.is_delete):
            return None
        mapper = state.bind_mapper
        if mapper is None or not self.wanted(mapper):
            return None
        result = state.invoke_statement()
        table = str(mapper.local_table.name)  # type: ignore[attr-defined]  # quoted_name: a str subclass
        verb = "bulk_update" if state.is_update else "bulk_delete"
        count = getattr(result, "rowcount", -1)
        self.record(state.session, [{"action": f"{action_part(table)}.{verb}",
                                     "target": ("table", table), "metadata": {"count": count}}])
        return result

    # -- the transaction's outcome -----------------------------------------------------

    def after_commit(self, session: Session) -> None:
        pending = self.pending(session)
        nested = session.get_nested_transaction()
        if nested is not None:  # a savepoint released: its events now wait on the enclosing one
            moved = pending.pop(nested, [])
            if moved:
                pending.setdefault(_enclosing(nested), []).extend(moved)
            return
        changes = [change for queue in pending.values() for change in queue]
        pending.clear()
        log = self.log or get_default()
        for ctx, fields in changes:
            try:
                ctx.run(log.emit, **fields)
            except Exception as exc:  # the change is committed: raising now would only hide the rest
                _report.error("audit event %s for %s was not recorded: %s: %s", fields["action"],
                              fields["target"], type(exc).__name__, exc)

    def after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        """A root or savepoint that ends with events still waiting was rolled back (or closed)."""
        if not (transaction.nested or transaction.parent is None):
            return
        pending = self.pending(session)
        for key in [k for k in pending if _within(k, transaction)]:
            del pending[key]


def _enclosing(transaction: SessionTransaction) -> SessionTransaction:
    """The savepoint or root transaction that a released savepoint's changes now belong to."""
    parent = transaction.parent
    assert parent is not None
    while parent.parent is not None and not parent.nested:
        parent = parent.parent
    return parent


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def _values(state: InstanceState[Any]) -> dict[str, Any]:
    """The loaded column values (nothing is loaded from the database inside the flush)."""
    loaded = state.dict
    return {attr.key: jsonable(loaded[attr.key]) for attr in state.mapper.column_attrs if attr.key in loaded}


def _fetch(session: Session, state: InstanceState[Any], keys: list[str]) -> dict[str, Any]:
    """The stored values of some columns of one row, read in the flush's own transaction (no autoflush)."""
    mapper = state.mapper
    columns = [mapper.column_attrs[key].columns[0] for key in keys]
    where = [column == value for column, value in zip(mapper.primary_key, state.identity or (), strict=True)]
    row = session.connection(bind_arguments={"mapper": mapper}).execute(select(*columns).where(*where)).first()
    return {} if row is None else {key: jsonable(value) for key, value in zip(keys, row, strict=True)}


def _diff(state: InstanceState[Any], stored: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        history = state.attrs[attr.key].history
        if history.added or history.deleted:
            old = history.deleted[0] if history.deleted else stored.get(attr.key)
            new = history.added[0] if history.added else None
            if jsonable(old) != jsonable(new):
                before[attr.key] = jsonable(old)
                after[attr.key] = jsonable(new)
    return before, after


def _row_event(state: InstanceState[Any], verb: str, before: dict[str, Any] | None,
               after: dict[str, Any] | None) -> dict[str, Any]:
    mapper = state.mapper
    table = str(mapper.local_table.name)  # type: ignore[attr-defined]
    if state.identity is not None:
        key = pk_text(state.identity)
    else:
        key = pk_text([state.dict.get(mapper.get_property_by_column(c).key) for c in mapper.primary_key])
    return {"action": f"{action_part(table)}.{verb}", "target": (table, key), "before": before, "after": after}
