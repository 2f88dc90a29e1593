"""SQLAlchemy track(): ORM changes and bulk statements become events on commit, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, String, create_engine, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sealog import REDACTED, AuditLog
from sealog.integrations.sqlalchemy import track

from .conftest import stored


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    balance: Mapped[int] = mapped_column(default=0)
    api_token: Mapped[str | None] = mapped_column(String(50), default=None)


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


@pytest.fixture(params=["sqlite", "postgres"])
def app_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The application's own database (the audit log stays on SQLite)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def engine(app_url: str) -> Iterator[Engine]:
    engine = create_engine(app_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def maker(engine: Engine, log: AuditLog) -> sessionmaker[Session]:
    maker = sessionmaker(engine)
    track(maker, log=log, models=[Account], tenant="acme")
    return maker


def test_inserts_updates_and_deletes_become_events_with_changed_columns(maker: sessionmaker[Session],
                                                                         log: AuditLog) -> None:
    """create has the row, update only what changed (before and after), delete the row; secrets are redacted."""
    with maker() as session:
        account = Account(name="Ada", balance=10, api_token="tok-123")
        session.add(account)
        session.commit()
        account.balance = 25
        account.name = "Ada"  # set to the same value: not a change
        session.commit()
        session.delete(account)
        session.commit()
    create, change, gone = stored(log)
    assert [e.action for e in (create, change, gone)] == ["accounts.create", "accounts.update", "accounts.delete"]
    assert {(e.target_type, e.target_id) for e in (create, change, gone)} == {("accounts", str(account.id))}
    assert create.before is None
    assert create.after == {"id": account.id, "name": "Ada", "balance": 10, "api_token": REDACTED}
    assert (change.before, change.after) == ({"balance": 10}, {"balance": 25})
    assert (gone.before["balance"], gone.after) == (25, None)


def test_nothing_is_emitted_before_commit_and_a_rollback_leaves_nothing(maker: sessionmaker[Session],
                                                                        log: AuditLog) -> None:
    """Flushed but uncommitted changes wait; rolled back they vanish; the next commit emits only its own."""
    with maker() as session:
        session.add(Account(name="ghost"))
        session.flush()
        assert stored(log) == []
        session.rollback()
        session.add(Account(name="kept"))
        session.commit()
    assert [e.after["name"] for e in stored(log)] == ["kept"]


def test_savepoints_keep_released_changes_and_drop_rolled_back_ones(maker: sessionmaker[Session],
                                                                     log: AuditLog) -> None:
    """A released savepoint's events join the transaction; a rolled-back savepoint's do not; closing drops all."""
    with maker() as session:
        with session.begin_nested():
            session.add(Account(name="released"))
        nested = session.begin_nested()
        session.add(Account(name="undone"))
        session.flush()
        nested.rollback()
        session.add(Account(name="outer"))
        assert stored(log) == []
        session.commit()
    with maker() as session:  # closed without commit: an implicit rollback
        session.add(Account(name="never"))
        session.flush()
    assert [e.after["name"] for e in stored(log)] == ["released", "outer"]


def test_bulk_update_and_delete_statements_emit_one_event_with_the_count(maker: sessionmaker[Session],
                                                                          log: AuditLog) -> None:
    """ORM-enabled update()/delete() give one bulk event each, with the row count, and no per-row events."""
    with maker() as session:
        session.add_all([Account(name=f"a{i}", balance=i) for i in range(5)])
        session.commit()
        session.execute(update(Account).where(Account.balance >= 2).values(balance=0))
        session.execute(delete(Account).where(Account.balance == 0))
        session.commit()
        with session.begin():
            session.execute(update(Account).values(name="rolled"))
            session.rollback()
    events = stored(log)
    assert [e.action for e in events] == ["accounts.create"] * 5 + ["accounts.bulk_update", "accounts.bulk_delete"]
    assert [e.metadata["count"] for e in events[5:]] == [3, 4]


def test_only_the_listed_models_are_tracked(maker: sessionmaker[Session], log: AuditLog) -> None:
    """With models=[Account], Note rows and statements record nothing."""
    with maker() as session:
        session.add(Note(text="n"))
        session.add(Account(name="a"))
        session.commit()
        session.execute(update(Note).values(text="m"))
        session.commit()
    assert [e.action for e in stored(log)] == ["accounts.create"]


def test_events_carry_the_context_of_the_flush_and_the_tenant_callable(engine: Engine, log: AuditLog) -> None:
    """The request context at flush time is kept to commit; tenant(session) picks the tenant, else the context's."""
    session = Session(engine)
    track(session, log=log, tenant=lambda s: s.info.get("tenant"))
    with log.context(request_id="r-1", actor=("user", "u-1"), tenant_id="acme"):
        session.add(Account(name="ctx"))
        session.flush()
    session.commit()  # outside the context now
    session.info["tenant"] = "globex"
    session.add(Note(text="n"))
    session.commit()
    session.close()
    [account] = stored(log, "acme")
    assert (account.request_id, account.actor_id) == ("r-1", "u-1")
    assert [e.action for e in stored(log, "globex")] == ["notes.create"]


@pytest.mark.allow_sealog_errors
def test_an_event_that_cannot_be_emitted_is_reported_not_raised_after_commit(engine: Engine, log: AuditLog,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    """With no tenant anywhere the commit still succeeds; the lost event is an ERROR on the sealog logger."""
    with Session(engine) as session:
        track(session, log=log)
        session.add(Note(text="orphan"))
        session.commit()
        assert session.scalars(select(Note.text)).all() == ["orphan"]
    assert any(r.name == "sealog" and "notes.create" in r.getMessage() for r in caplog.records)


def test_tracking_the_same_target_twice_is_refused(engine: Engine, log: AuditLog) -> None:
    """A second track() on one sessionmaker would double every event, so it raises."""
    maker = sessionmaker(engine)
    track(maker, log=log, tenant="acme")
    with pytest.raises(ValueError, match="already tracked"):
        track(maker, log=log, tenant="acme")


def test_asyncio_sessions_are_tracked(app_url: str, log: AuditLog) -> None:
    """async_sessionmaker and AsyncSession: changes and bulk statements emit on commit, in the task's context."""
    async_url = app_url.replace("sqlite://", "sqlite+aiosqlite://", 1)

    async def main() -> None:
        engine = create_async_engine(async_url)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        maker = async_sessionmaker(engine)
        track(maker, log=log, models=[Account], tenant="acme")
        with log.context(request_id="async-1"):
            async with maker() as session:
                session.add(Account(name="async"))
                await session.commit()
                await session.execute(update(Account).values(balance=7))
                await session.commit()
                session.add(Account(name="rolled"))
                await session.flush()
                await session.rollback()
        single = AsyncSession(engine)
        track(single, log=log, models=[Account], tenant="acme")
        single.add(Account(name="single"))
        await single.commit()
        await single.close()
        await engine.dispose()

    asyncio.run(main())
    events = stored(log)
    assert [e.action for e in events] == ["accounts.create", "accounts.bulk_update", "accounts.create"]
    assert [e.request_id for e in events] == ["async-1", "async-1", None]
    assert events[1].metadata == {"count": 1}
