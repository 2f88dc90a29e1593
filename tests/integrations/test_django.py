"""The Django app: request context, auth signals, model tracking, bulk operations, on_commit, command, admin."""
# ruff: noqa: E402  (Django must be set up before its models are imported)

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import suppress
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integrations.djapp.settings")

import django

django.setup()

from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test import AsyncClient, Client, override_settings

from sealog import REDACTED, AuditLog
from sealog.integrations.django import get_log

from .conftest import stored
from .djapp.models import Author, Book, Memo
from .djapp.settings import STATE

PASSWORD = "Corr3ct-Horse-Battery"
WRONG = "Wr0ng-Pa55w0rd-xyzzy-4711"


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    call_command("migrate", run_syncdb=True, verbosity=0)


@pytest.fixture
def audit(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    """SEALOG for one test; afterwards the log is closed and every table emptied."""
    config = {"URL": db_url, "SPOOL_DIR": str(tmp_path / "spool"), "WRITER": "thread", "TENANT": "acme",
              "TRACK": ["djapp.Author", "djapp.Book", "auth.User"], "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    with override_settings(SEALOG=config):
        log = get_log()
        yield log
        log.close()
    with connection.cursor() as cursor:
        for table in ("djapp_book", "djapp_author", "djapp_memo", "auth_user", "django_session"):
            cursor.execute(f"DELETE FROM {table}")


def actions(log: AuditLog) -> list[str]:
    return [e.action for e in stored(log)]


def user(name: str = "ada", **extra: Any) -> User:
    return User.objects.create_user(name, password=PASSWORD, **extra)


# -- request context and auth ----------------------------------------------------------------


def test_middleware_binds_request_id_client_agent_and_the_signed_in_user(audit: AuditLog) -> None:
    """A view's event has the header's request id (echoed), REMOTE_ADDR, user agent and ("user", pk)."""
    ada = user()
    client = Client()
    client.force_login(ada)
    response = client.get("/whoami/", HTTP_X_REQUEST_ID="dj-1", HTTP_USER_AGENT="ua/1", REMOTE_ADDR="198.51.100.7")
    assert response["x-request-id"] == "dj-1"
    event = next(e for e in stored(audit) if e.event_id == response.content.decode())
    assert (event.request_id, event.ip_address, event.user_agent) == ("dj-1", "198.51.100.7", "ua/1")
    assert (event.actor_type, event.actor_id, event.tenant_id) == ("user", str(ada.pk), "acme")


def test_trusted_proxies_setting_governs_forwarded_for(audit: AuditLog) -> None:
    """X-Forwarded-For counts only from a peer in TRUSTED_PROXIES; an anonymous request has no actor."""
    client = Client()
    direct = client.get("/whoami/", HTTP_X_FORWARDED_FOR="6.6.6.6", REMOTE_ADDR="198.51.100.7")
    proxied = client.get("/whoami/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR="10.0.0.2")
    by_id = {e.event_id: e for e in stored(audit)}
    assert by_id[direct.content.decode()].ip_address == "198.51.100.7"
    assert by_id[proxied.content.decode()].ip_address == "203.0.113.9"
    assert by_id[direct.content.decode()].actor_id is None


def test_async_views_get_the_context_and_the_user(audit: AuditLog) -> None:
    """Under Django's async handler the middleware runs async and resolves the user with auser()."""
    ada = user()
    client = AsyncClient()
    asyncio.run(client.aforce_login(ada))
    response = asyncio.run(client.get("/whoami-async/", headers={"x-request-id": "as-1"}))
    assert response["x-request-id"] == "as-1"
    event = next(e for e in stored(audit) if e.event_id == response.content.decode())
    assert (event.request_id, event.actor_id) == ("as-1", str(ada.pk))


def test_a_streamed_response_is_produced_in_the_request_context(audit: AuditLog) -> None:
    """Events emitted while Django streams the body still carry the request id."""
    response = Client().get("/stream/", HTTP_X_REQUEST_ID="st-1")
    ids = b"".join(response.streaming_content).decode().split()  # type: ignore[attr-defined]
    assert [(e.event_id, e.request_id) for e in stored(audit)] == [(i, "st-1") for i in ids]


def test_login_and_logout_are_recorded_with_the_user_as_actor(audit: AuditLog) -> None:
    """The login view's success emits auth.login, the logout view auth.logout, both with the user and request."""
    ada = user()
    client = Client()
    client.post("/login/", {"username": "ada", "password": PASSWORD}, HTTP_X_REQUEST_ID="in-1")
    client.post("/logout/", HTTP_X_REQUEST_ID="out-1")
    login, logout = (e for e in stored(audit) if e.action in ("auth.login", "auth.logout"))
    assert (login.action, login.outcome, login.actor_id, login.request_id) == ("auth.login", "success", str(ada.pk), "in-1")
    assert (logout.action, logout.actor_id, logout.request_id) == ("auth.logout", str(ada.pk), "out-1")


def test_a_failed_login_records_the_username_and_no_byte_of_the_password(audit: AuditLog, tmp_path: Path) -> None:
    """outcome failure with metadata.username; the attempted password is in no file: audit db, WAL, spool, app db."""
    user()
    response = Client().post("/login/", {"username": "ada", "password": WRONG}, REMOTE_ADDR="198.51.100.9")
    assert response.status_code == 200  # the form again
    [failed] = [e for e in stored(audit) if e.action == "auth.login"]
    assert (failed.outcome, failed.metadata, failed.ip_address) == ("failure", {"username": "ada"}, "198.51.100.9")
    files = [p for root in (tmp_path, STATE) for p in root.rglob("*") if p.is_file()]
    assert any(p.name.endswith("-wal") for p in files)
    assert any("spool" in str(p) for p in files)
    for path in files:
        data = path.read_bytes()
        for needle in (WRONG, WRONG.encode("utf-16-le").decode("latin-1"), "Wr0ng-Pa55"):
            assert needle.encode("latin-1") not in data, f"the password leaked into {path}"


# -- model tracking --------------------------------------------------------------------------


def test_tracked_models_record_create_update_delete_with_changed_fields_only(audit: AuditLog) -> None:
    """Each change is one event: target (label, pk), before/after holding only what changed; secrets redacted."""
    author = Author.objects.create(name="Ursula", api_key="k-123")
    book = Book.objects.create(title="Lathe", author=author, price=Decimal("9.50"))
    book.price = Decimal("12.00")
    book.save()
    book.save()  # nothing changed: no event
    author.name = "Ursula K."
    author.save(update_fields=["name"])
    pk = book.pk
    book.delete()
    events = stored(audit)
    assert [e.action for e in events] == ["djapp.author.create", "djapp.book.create", "djapp.book.update",
                                          "djapp.author.update", "djapp.book.delete"]
    made, _, repriced, renamed, gone = events
    assert (made.target_type, made.target_id, made.before) == ("djapp.Author", str(author.pk), None)
    assert made.after == {"id": author.pk, "name": "Ursula", "api_key": REDACTED}
    assert (repriced.before, repriced.after) == ({"price": "9.50"}, {"price": "12.00"})
    assert (renamed.before, renamed.after) == ({"name": "Ursula"}, {"name": "Ursula K."})
    assert (gone.target_id, gone.after) == (str(pk), None)
    assert gone.before == {"id": pk, "title": "Lathe", "author_id": author.pk, "price": "12.00", "published": None}


def test_a_user_password_change_is_recorded_redacted(audit: AuditLog) -> None:
    """auth.User is tracked like any model; its password field (a hash) is redacted by name."""
    ada = user()
    ada.set_password("An0ther-One")
    ada.save()
    update = next(e for e in stored(audit) if e.action == "auth.user.update")
    assert (update.before, update.after) == ({"password": REDACTED}, {"password": REDACTED})


def test_changes_made_in_a_request_carry_its_context(audit: AuditLog) -> None:
    """The context at save time (request id, user) is kept until the commit emits the event."""
    ada = user()
    client = Client()
    client.force_login(ada)
    client.post("/authors/", {"name": "Le Guin"}, HTTP_X_REQUEST_ID="save-1")
    event = next(e for e in stored(audit) if e.action == "djapp.author.create")
    assert (event.request_id, event.actor_id) == ("save-1", str(ada.pk))


def test_a_rolled_back_change_leaves_no_event(audit: AuditLog) -> None:
    """An atomic block that raises, a rolled-back savepoint and a failing ATOMIC_REQUESTS view record nothing."""
    book = Book.objects.create(title="T", author=Author.objects.create(name="A"))
    with suppress(RuntimeError), transaction.atomic():
        Author.objects.create(name="ghost")
        raise RuntimeError("roll back")
    with transaction.atomic():
        Author.objects.create(name="kept")
        with suppress(RuntimeError), transaction.atomic():
            Author.objects.create(name="inner ghost")
            raise RuntimeError("roll back the savepoint")
    client = Client(raise_request_exception=False)
    assert client.post(f"/books/{book.pk}/reprice/", {"price": "5", "fail": "1"}).status_code == 500
    assert client.post(f"/books/{book.pk}/reprice/", {"price": "6"}).status_code == 200
    events = stored(audit)
    assert [e.action for e in events] == ["djapp.author.create", "djapp.book.create", "djapp.author.create",
                                          "djapp.book.update"]
    assert (events[2].after["name"], events[3].after) == ("kept", {"price": "6.00"})


def test_nothing_is_emitted_before_the_transaction_commits(audit: AuditLog) -> None:
    """Inside the atomic block the event waits; the commit emits it exactly once."""
    with transaction.atomic():
        Author.objects.create(name="waiting")
        assert stored(audit) == []
    assert actions(audit) == ["djapp.author.create"]


def test_untracked_models_record_nothing(audit: AuditLog) -> None:
    """Memo is not in TRACK: saves, updates and deletes (row or bulk) emit no event."""
    memo = Memo.objects.create(text="a")
    memo.text = "b"
    memo.save()
    Memo.objects.update(text="c")
    Memo.objects.bulk_create([Memo(text="d")])
    Memo.objects.all().delete()
    assert actions(audit) == []


# -- bulk operations -------------------------------------------------------------------------


def test_queryset_update_is_one_bulk_event_with_count_and_pks(audit: AuditLog) -> None:
    """QuerySet.update on a tracked model: one bulk_update with metadata.count, pks (strings), fields."""
    author = Author.objects.create(name="A")
    books = Book.objects.bulk_create([Book(title=f"b{i}", author=author, price=i) for i in range(4)])
    count = Book.objects.filter(price__gte=1).update(price=0)
    event = stored(audit)[-1]
    assert (event.action, event.target_type, event.target_id) == ("djapp.book.bulk_update", "model", "djapp.Book")
    assert event.metadata == {"count": count, "pks": sorted(str(b.pk) for b in books[1:]), "fields": ["price"]}
    assert actions(audit).count("djapp.book.update") == 0


def test_queryset_delete_is_one_bulk_event_and_no_per_row_events(audit: AuditLog) -> None:
    """QuerySet.delete: one bulk_delete with the count of that model's rows; cascaded other models keep their rows' events."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"b{i}", author=author) for i in range(3)])
    Author.objects.filter(pk=author.pk).delete()
    events = stored(audit)
    assert [e.action for e in events] == ["djapp.author.create", "djapp.book.bulk_create",
                                          "djapp.book.delete", "djapp.book.delete", "djapp.book.delete",
                                          "djapp.author.bulk_delete"]
    assert events[-1].metadata == {"count": 1, "pks": [str(author.pk)]}


def test_bulk_create_and_bulk_update_are_one_event_each(audit: AuditLog) -> None:
    """bulk_create and bulk_update: one event each with count and pks; no per-row create/update."""
    author = Author.objects.create(name="A")
    books = Book.objects.bulk_create([Book(title=f"b{i}", author=author) for i in range(3)])
    for book in books:
        book.title = book.title.upper()
    Book.objects.bulk_update(books, ["title"])
    created, updated = stored(audit)[1:]
    pks = [str(b.pk) for b in books]
    assert (created.action, created.metadata) == ("djapp.book.bulk_create", {"count": 3, "pks": pks})
    assert (updated.action, updated.metadata) == ("djapp.book.bulk_update", {"count": 3, "pks": pks, "fields": ["title"]})


def test_bulk_pks_are_capped_at_a_thousand_and_the_count_is_exact(audit: AuditLog) -> None:
    """A 1005-row bulk_create lists 1000 pks and counts 1005; a rolled-back bulk update records nothing."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"b{i}", author=author) for i in range(1005)])
    with suppress(RuntimeError), transaction.atomic():
        Book.objects.update(title="x")
        raise RuntimeError("roll back")
    [event] = [e for e in stored(audit) if e.action.startswith("djapp.book")]
    assert (event.action, event.metadata["count"], len(event.metadata["pks"])) == ("djapp.book.bulk_create", 1005, 1000)


# -- management command and admin -------------------------------------------------------------


def test_management_command_mirrors_the_cli(audit: AuditLog) -> None:
    """manage.py sealog verify / query / stats run the CLI against SEALOG's URL."""
    Author.objects.create(name="A")
    assert audit.flush(10)
    out = StringIO()
    call_command("sealog", "verify", stdout=out)
    assert "1 events in 1 chains: ok" in out.getvalue()
    out = StringIO()
    call_command("sealog", "query", "--tenant", "acme", "--format", "jsonl", stdout=out)
    assert '"action":"djapp.author.create"' in out.getvalue().replace(" ", "")
    out = StringIO()
    call_command("sealog", "stats", "--json", stdout=out)
    assert '"tenant_id": "acme"' in out.getvalue()
    with pytest.raises(CommandError, match="unknown sealog command"):
        call_command("sealog", "nope")


def test_admin_page_lists_the_tenants_events_for_staff_only(audit: AuditLog) -> None:
    """Staff see the tenant's events (filterable by action); anonymous users are sent to log in."""
    Author.objects.create(name="A")
    audit.emit(tenant_id="acme", action="report.export")
    audit.emit(tenant_id="globex", action="other.tenant")
    assert audit.flush(10)
    assert Client().get("/admin/audit/").status_code == 302
    staff = Client()
    staff.force_login(user("staff", is_staff=True))
    page = staff.get("/admin/audit/").content.decode()
    assert ("djapp.author.create" in page, "report.export" in page, "other.tenant" in page) == (True, True, False)
    filtered = staff.get("/admin/audit/", {"action": "report.*"}).content.decode()
    assert ("report.export" in filtered, "djapp.author.create" in filtered) == (True, False)

