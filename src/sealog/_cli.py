"""The ``sealog`` command line. Exit codes: 0 ok, 1 check failed, 2 bad input, 3 unreachable."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import click

from . import _checkpoints as ckpt
from . import _output as output
from ._errors import InvalidEvent, InvalidQuery, SealogError, SpoolFull, StoreUnavailable
from ._event import Event
from ._log import AuditLog, default_spool_dir, make_query, resolve_url
from ._note import Checkpoint, valid_name
from ._redact_cli import redact_check
from ._spool import HEALTH, spool_problems
from .stores import Store, open_store
from .stores.base import TreeStore

F = TypeVar("F", bound=Callable[..., Any])
EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"sealog: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns sealog's exceptions into the contract's exit codes and one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (InvalidEvent, InvalidQuery) as exc:
            fail(str(exc), EXIT_USAGE)
        except (StoreUnavailable, SpoolFull) as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        except ValueError as exc:  # a malformed URL and the like
            fail(str(exc), EXIT_USAGE)
        except SealogError as exc:
            fail(str(exc), EXIT_USAGE)


def url_option(func: F) -> F:
    return click.option("--url", envvar="SEALOG_URL", default=None,
                        help="Store URL (else SEALOG_URL, else sqlite:///sealog.db).")(func)


def log_name_option(func: F) -> F:
    return click.option("--log-name", envvar="SEALOG_LOG_NAME", default=None,
                        help="The log's name, the first part of each checkpoint's origin (default: sealog).")(func)


def signing_key_option(func: F) -> F:
    return click.option("--signing-key", envvar="SEALOG_SIGNING_KEY", default=None,
                        type=click.Path(exists=True, dir_okay=False),
                        help="The signer key file (sealog keygen); else SEALOG_SIGNING_KEY.")(func)


@contextmanager
def opened(url: str | None, *, must_exist: bool = True) -> Iterator[Store]:
    resolved = resolve_url(url)
    store = open_store(resolved)
    path = getattr(store, "path", None)
    if must_exist and isinstance(path, Path) and not path.exists():
        fail(f"no store at {path}: run `sealog init` first", EXIT_UNREACHABLE)
    try:
        yield store
    finally:
        store.close()


def parse_pair(option: str, value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    kind, sep, ident = value.partition(":")
    if not sep or not kind or not ident:
        fail(f"{option} must be TYPE:ID, like user:u-1 (got {value!r})")
    return kind, ident


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sealog")
def main() -> None:
    """sealog: audit events that are never lost and cannot be altered unnoticed."""


@main.command()
@url_option
@click.option("--create-roles", is_flag=True, help="PostgreSQL: create the writer and reader roles.")
@click.option("--writer-role", default="sealog_writer", show_default=True)
@click.option("--writer-password", default=None, envvar="SEALOG_WRITER_PASSWORD")
@click.option("--reader-role", default="sealog_reader", show_default=True)
@click.option("--reader-password", default=None, envvar="SEALOG_READER_PASSWORD")
def init(url: str | None, create_roles: bool, writer_role: str, writer_password: str | None,
         reader_role: str, reader_password: str | None) -> None:
    """Create or migrate the store; idempotent."""
    with opened(url, must_exist=False) as store:
        store.migrate()
        if create_roles:
            create = getattr(store, "create_roles", None)
            if create is None:
                fail("--create-roles needs a PostgreSQL store")
            create(writer_role, writer_password, reader_role, reader_password)
            click.echo(f"roles: {writer_role} (INSERT, SELECT), {reader_role} (SELECT)")
        click.echo(f"store ready: {store.url.split('@')[-1]}")


@main.command()
@url_option
@click.option("--tenant", required=True)
@click.option("--action", required=True)
@click.option("--actor", help="TYPE:ID")
@click.option("--target", help="TYPE:ID")
@click.option("--outcome", default="success", show_default=True)
@click.option("--metadata", help="A JSON object.")
@click.option("--ip", "ip_address")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the store.")
def emit(url: str | None, tenant: str, action: str, actor: str | None, target: str | None,
         outcome: str, metadata: str | None, ip_address: str | None, timeout: float) -> None:
    """Record one event; prints its event_id once it is stored."""
    meta: Any = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as exc:
            fail(f"--metadata is not JSON: {exc}")
    log = AuditLog(url)
    try:
        event_id = log.emit(tenant_id=tenant, action=action, actor=parse_pair("--actor", actor),
                            target=parse_pair("--target", target), outcome=outcome,
                            metadata=meta, ip_address=ip_address)
        if not log.flush(timeout):
            error = log.stats()["last_error"] or "timed out"
            fail(f"event {event_id} is in the spool but not yet stored: {error}", EXIT_UNREACHABLE)
    finally:
        log.close(timeout=0.5)
    click.echo(event_id)


def query_options(func: F) -> F:
    options = [
        click.option("--tenant", required=True),
        click.option("--action", help="Pattern: '*' one word, '#' any number."),
        click.option("--actor", "actor_id", help="Actor id."),
        click.option("--target", "target_id", help="Target id."),
        click.option("--outcome"),
        click.option("--since", help="RFC 3339, or a span back from now: 15m, 2h, 7d."),
        click.option("--until", help="RFC 3339, or a span back from now."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@url_option
@query_options
@click.option("--limit", default=100, show_default=True)
@click.option("--after", help="The cursor printed after the previous page.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "table"]), default=None,
              help="Default: a table on a terminal, JSONL when piped.")
def query(url: str | None, fmt: str | None, limit: int, after: str | None, **filters: Any) -> None:
    """Search a tenant's events, newest first."""
    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    with opened(url) as store:
        page = store.query(make_query(filters.pop("tenant"), limit=limit, after=after, **filters))
    if fmt == "table":
        show_table(page.events)
    else:
        for chunk in output.stream(page.events, fmt):
            sys.stdout.buffer.write(chunk)
    if page.next:
        click.echo(f"next page: --after {page.next}", err=True)


def show_table(events: list[Event]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("occurred_at", "seq", "action", "outcome", "actor", "target", "event_id"):
        table.add_column(column)
    for e in events:
        table.add_row(e.occurred_at, str(e.seq), e.action, e.outcome,
                      f"{e.actor_type or ''}:{e.actor_id or ''}".strip(":"),
                      f"{e.target_type or ''}:{e.target_id or ''}".strip(":"), e.event_id)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: do not squeeze timestamps and ids
    console.print(table)


@main.command()
@url_option
@click.option("--tenant", required=True)
@click.option("--action", help="Pattern: '*' one word, '#' any number.")
@click.option("--from-start", is_flag=True, help="Print the whole chain first.")
@click.option("--interval", default=0.5, show_default=True, help="Seconds between polls.")
@click.option("--timeout", default=None, type=float, help="Stop after this many seconds.")
def tail(url: str | None, tenant: str, action: str | None, from_start: bool, interval: float,
         timeout: float | None) -> None:
    """Follow a tenant's new events as JSONL, until interrupted."""
    from . import _patterns as patterns

    if action:
        patterns.check(action)
    deadline = None if timeout is None else time.monotonic() + timeout
    with opened(url) as store:
        last = 0 if from_start else next((h.seq for h in store.heads() if h.tenant_id == tenant), 0)
        try:
            while deadline is None or time.monotonic() < deadline:
                for event in store.iter_events(tenant, last):
                    last = event.seq or last
                    if action is None or patterns.matches(action, event.action):
                        sys.stdout.buffer.write(output.jsonl_line(event))
                sys.stdout.flush()
                time.sleep(interval)
        except KeyboardInterrupt:
            pass


@main.command()
@url_option
@click.option("--tenant", default=None, help="Only this tenant (default: every chain).")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A signed checkpoint: the tenant's first events must still give its root (repeatable).")
@click.option("--verifier-key", default=None, help="The log's verifier key (its text, or a file holding it).")
@click.option("--full", is_flag=True, help="Re-check every event (default: only those after the last verified "
                                           "position, linked to it, and the tree's consistency since).")
@click.option("--sample", type=click.IntRange(min=0), default=0, metavar="N",
              help="Also re-hash N random earlier-verified events of each tenant against their inclusion proofs.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Verify tenants in N processes (default: one per core for a store of several tenants and "
                   "20,000+ events).")
@signing_key_option
@log_name_option
def verify(url: str | None, tenant: str | None, checkpoints: tuple[str, ...], verifier_key: str | None, full: bool,
           sample: int, jobs: int | None, signing_key: str | None, log_name: str | None) -> None:
    """Re-hash what is new in every chain (--full: all of it); exit 1 and print each problem when anything was altered.

    The position verified is remembered in the store (signed with the signing key, if one is set), so
    the next run checks only the events after it.
    """
    from .stores import _verify

    signed = _open_checkpoints(checkpoints, verifier_key, log_name, tenant)
    signer = ckpt.load_signer(signing_key) if signing_key else None
    with opened(url) as store:
        source = _verify.source_of(store)
        with progress("verifying", None) as advance:
            if source is None:
                report = store.verify(tenant, advance)
            else:
                report = _verify.run(source, tenant, advance, incremental=not full, sample=sample, jobs=jobs,
                                     signer=signer, remember=True)
        pinned = [(cp, ckpt.check_store(tree_store(store), t, cp)) for t, cp in signed]
    for problem in report.problems:
        click.echo(str(problem))
    if report.problem_count > len(report.problems):
        click.echo(f"... and {report.problem_count - len(report.problems)} more problems")
    state = "ok" if report.ok else f"FAILED ({report.problem_count} problems)"
    extra = [f"{report.earlier} verified earlier, not re-read"] if report.earlier else []
    extra += [f"{report.sampled} earlier events sampled"] if report.sampled else []
    click.echo(f"{report.checked} events in {report.tenants} chains: {state}"
               + (f" ({'; '.join(extra)})" if extra else ""))
    for cp, found in pinned:
        for line in found:
            click.echo(line)
        click.echo(f"checkpoint {cp.origin} (size {cp.size}): {'FAILED' if found else 'ok'}")
    sys.exit(0 if report.ok and not any(found for _, found in pinned) else EXIT_CHECK_FAILED)


def _open_checkpoints(paths: tuple[str, ...], verifier_key: str | None, log_name: str | None,
                      tenant: str | None) -> list[tuple[str, Checkpoint]]:
    """The checkpoints of ``verify --checkpoint``, signature checked; exit 1 naming what failed."""
    if not paths:
        if verifier_key:
            fail("--verifier-key goes with --checkpoint")
        return []
    if not verifier_key:
        fail("--checkpoint needs --verifier-key (the log's verifier key, or a file holding it)")
    verifier = ckpt.load_verifier(verifier_key)
    signed = []
    for path in paths:
        try:
            found, checkpoint = ckpt.open_signed(Path(path).read_text(encoding="utf-8"), verifier,
                                                 ckpt.log_name(log_name))
        except (SealogError, UnicodeDecodeError) as exc:
            fail(f"{path}: {exc}", EXIT_CHECK_FAILED)
        if tenant is not None and found != tenant:
            fail(f"{path}: the checkpoint is for tenant {found!r}, not {tenant!r}", EXIT_CHECK_FAILED)
        signed.append((found, checkpoint))
    return signed


def tree_store(store: Store) -> TreeStore:
    if not isinstance(store, TreeStore):
        fail(f"the store {store.url.split('@')[-1]} keeps no Merkle tree")
    return store


@main.command()
@click.option("--name", required=True, help="The key's name (it appears in every signature line).")
@click.option("-o", "--output", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where the signer (private) key goes; created with mode 0600, never overwritten.")
def keygen(name: str, path: Path) -> None:
    """Make an Ed25519 signing key; print its verifier key (give that one to auditors)."""
    from ._note import generate_key

    if not valid_name(name):
        fail(f"--name {name!r}: a key name is non-empty, without spaces or '+'")
    signer, verifier = generate_key(name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{path} exists: not overwriting a key")
    except OSError as exc:
        fail(f"cannot create {path}: {exc.strerror}")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(signer + "\n")
    click.echo(verifier)


@main.command()
@url_option
@click.option("--tenant", default=None, help="Only this tenant (default: every tenant).")
@signing_key_option
@log_name_option
def checkpoint(url: str | None, tenant: str | None, signing_key: str | None, log_name: str | None) -> None:
    """Sign each tenant's tree (when it grew), keep the checkpoint and print it."""
    policy = ckpt.Checkpoints.configure(signing_key, name=log_name)
    failed = False
    with opened(url) as store:
        tree = tree_store(store)
        tenants = [tenant] if tenant is not None else [h.tenant_id for h in store.heads()]
        for number, name in enumerate(tenants):
            try:
                note = policy.checkpoint(tree, name)
            except (ckpt.NoCheckpoint, ckpt.TreeRewritten) as exc:
                click.echo(f"sealog: {exc}", err=True)
                failed = True
                continue
            click.echo(("\n" if number else "") + note, nl=False)
    if failed:
        sys.exit(EXIT_CHECK_FAILED)


@main.command("verify-export")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--checkpoint", "checkpoint_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--verifier-key", required=True, help="The log's verifier key (its text, or a file holding it).")
@log_name_option
def verify_export(path: str, checkpoint_path: str, verifier_key: str, log_name: str | None) -> None:
    """Check a JSONL export against a signed checkpoint, with no store: exit 0 or 1."""
    [(tenant, signed)] = _open_checkpoints((checkpoint_path,), verifier_key, log_name, None)
    total = None if path == "-" else Path(path).stat().st_size
    from ._verify_export import check_export

    with click.open_file(path, "rb") as handle, progress("verifying export", total) as advance:
        lines = _bytes_counted(handle, advance)
        result = check_export(lines, tenant, signed)
    for problem in result.problems:
        click.echo(problem)
    if result.problem_count > len(result.problems):
        click.echo(f"... and {result.problem_count - len(result.problems)} more problems")
    state = "ok" if not result.problem_count else f"FAILED ({result.problem_count} problems)"
    click.echo(f"tenant {tenant!r}: {result.events} events, checkpoint size {signed.size}: {state}")
    sys.exit(EXIT_CHECK_FAILED if result.problem_count else 0)


def _bytes_counted(handle: IO[bytes], advance: Callable[[int], None]) -> Iterator[bytes]:
    done = 0
    for number, line in enumerate(handle, 1):
        done += len(line)
        if number % 1000 == 0:
            advance(done)
        yield line


@main.command()
@url_option
@click.option("--tenant", required=True)
@click.option("--event", "event_id", required=True, help="The event_id.")
@click.option("-o", "--output", "path", type=click.Path(dir_okay=False, writable=True), default="-")
@signing_key_option
@log_name_option
def receipt(url: str | None, tenant: str, event_id: str, path: str, signing_key: str | None,
            log_name: str | None) -> None:
    """Print an event's offline proof (C2SP tlog-proof) against the latest signed checkpoint."""
    from .stores.base import NotInLog

    policy = ckpt.Checkpoints.configure(signing_key, name=log_name)
    with opened(url) as store:
        try:
            text = policy.receipt(tree_store(store), tenant, event_id)
        except (NotInLog, ckpt.TreeRewritten) as exc:
            fail(str(exc), EXIT_CHECK_FAILED)
    if text is None:
        fail(f"no signed checkpoint of tenant {tenant!r} covers event {event_id} yet, and no signing key is set "
             "(--signing-key or SEALOG_SIGNING_KEY)", EXIT_CHECK_FAILED)
    with click.open_file(path, "w", encoding="utf-8") as sink:
        sink.write(text)


@main.command("verify-receipt")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--verifier-key", required=True, help="The log's verifier key (its text, or a file holding it).")
def verify_receipt(path: str, verifier_key: str) -> None:
    """Check a receipt offline (exit 0 or 1) and print the event it proves."""
    from ._tlogproof import ReceiptError
    from ._tlogproof import verify_receipt as check

    verifier = ckpt.load_verifier(verifier_key)
    with click.open_file(path, "r", encoding="utf-8") as handle:
        text = handle.read()
    try:
        event, index, signed = check(text, [verifier])
    except ReceiptError as exc:
        fail(f"{path}: {exc}", EXIT_CHECK_FAILED)
    sys.stdout.buffer.write(event + b"\n")
    click.echo(f"ok: event {index + 1} of {signed.origin} is in its signed tree of {signed.size} events", err=True)


@main.command()
@url_option
@click.option("--tenant", required=True)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("-o", "--output", "path", type=click.Path(dir_okay=False, writable=True), default="-")
def export(url: str | None, tenant: str, fmt: str, path: str) -> None:
    """Write a tenant's whole chain, streamed, in chain order."""
    with opened(url) as store:
        total = next((h.seq for h in store.heads() if h.tenant_id == tenant), 0)
        with click.open_file(path, "wb") as sink, progress("exporting", total) as advance:
            for chunk in output.stream(_counted(store.iter_events(tenant), advance), fmt):
                sink.write(chunk)
    if path != "-":
        click.echo(f"exported {total} events of {tenant!r} to {path}", err=True)


def _counted(events: Iterator[Event], advance: Callable[[int], None]) -> Iterator[Event]:
    for number, event in enumerate(events, 1):
        if number % 1000 == 0:
            advance(number)
        yield event


@contextmanager
def progress(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal's stderr; silent when piped."""
    if not sys.stderr.isatty():
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


@main.command()
@url_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stats(url: str | None, as_json: bool) -> None:
    """Events per tenant, chain heads, and the local spool's backlog."""
    resolved = resolve_url(url)
    unreachable = None  # the spool's side is worth showing most when the store is down
    with opened(resolved) as store:
        try:
            heads = store.heads()
        except StoreUnavailable as exc:
            heads, unreachable = [], str(exc)
    spool = default_spool_dir(resolved)
    segments = list(spool.glob("*.seg")) if spool.exists() else []
    backlog = sum(p.stat().st_size for p in segments)
    quarantine = spool / "quarantine.jsonl"
    consumers = []  # health records that `sealog consume` rewrites every interval
    for record in sorted(spool.glob("consume-*.json")) if spool.exists() else []:
        try:
            consumers.append(json.loads(record.read_text()))
        except (OSError, ValueError):
            continue
    writers = []  # each writer's outage cause, while it has one
    for record in sorted(spool.glob(f"*{HEALTH}")) if spool.exists() else []:
        with contextlib.suppress(OSError, ValueError):
            health = json.loads(record.read_text())
            if health.get("outage"):
                writers.append(health)
    report: dict[str, Any] = {
        "tenants": [{"tenant_id": h.tenant_id, "events": h.seq, "head": h.hash} for h in heads],
        "spool": {"directory": str(spool), "segments": len(segments), "bytes": backlog,
                  "quarantined_bytes": quarantine.stat().st_size if quarantine.exists() else 0,
                  "quarantined": _count_lines(quarantine),
                  "problems": spool_problems(spool)},
        "writers": writers,
        "consumers": consumers,
        "store_error": unreachable,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_stats(report, spool)
    if unreachable is not None:
        fail(f"the store could not be reached: {unreachable}", EXIT_UNREACHABLE)


def _print_stats(report: dict[str, Any], spool: Path) -> None:
    for head in report["tenants"]:
        click.echo(f"{head['tenant_id']}: {head['events']} events, head {head['head'][:16]}")
    click.echo(f"spool {spool}: {report['spool']['segments']} segments, {report['spool']['bytes']} bytes pending, "
               f"{report['spool']['quarantined']} quarantined (sealog requeue)")
    for path, reason in report["spool"]["problems"].items():
        click.echo(f"spool problem: {path}: {reason}")
    for writer in report["writers"]:
        click.echo(f"writer pid {writer.get('pid')}: store unavailable since {writer.get('since')}: "
                   f"{writer.get('outage')}")
    for consumer in report["consumers"]:
        fields = ", ".join(f"{k} {v}" for k, v in consumer.items() if not isinstance(v, dict | list))
        click.echo(f"consumer: {fields}")


@main.command()
@url_option
@click.option("--events", default=500, show_default=True, help="How many events to record.")
def demo(url: str | None, events: int) -> None:
    """Record a realistic burst of events, verify the chains, show the newest."""
    from ._demo import record_demo

    log = AuditLog(url)
    try:
        started = time.perf_counter()
        tenants = record_demo(log, events)
        emitted = time.perf_counter() - started
        stored = log.flush(30)
        elapsed = time.perf_counter() - started
        click.echo(f"recorded {events} events in {emitted * 1000:.1f} ms of caller time; "
                   f"stored and sealed in {elapsed:.2f} s ({'ok' if stored else 'NOT STORED'})")
        report = log.verify()
        click.echo(f"verify: {report.checked} events in {report.tenants} chains, "
                   f"{'ok' if report.ok else 'FAILED'}")
        for tenant in tenants:
            click.echo(f"\nnewest events of {tenant}:")
            show_table(log.query(tenant, limit=8).events)
    finally:
        log.close()


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0


@main.command()
@url_option
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The spool directory holding quarantine.jsonl (else the store's default).")
def requeue(url: str | None, spool_dir: Path | None) -> None:
    """Deliver the quarantined events again (after the cause was fixed)."""
    from ._requeue import requeue as run

    directory = spool_dir or default_spool_dir(resolve_url(url))
    if not directory.is_dir():
        fail(f"no spool directory at {directory}")
    with opened(url) as store:
        try:
            result = run(store, directory)
        except StoreUnavailable as exc:
            fail(f"the store is unavailable, nothing lost (the events stay in quarantine): {exc}",
                 EXIT_UNREACHABLE)
    click.echo(f"requeue: {result.stored} stored, {result.duplicates} already stored, "
               f"{len(result.kept)} still refused")
    for reason in result.kept[:10]:
        click.echo(f"  still refused: {reason}", err=True)
    if result.kept:
        sys.exit(EXIT_CHECK_FAILED)


@main.command()
@click.option("--server", required=True, help="The sealog service's base URL (https://audit.example.com).")
@click.option("--api-key", required=True, envvar="SEALOG_API_KEY", help="A key for the tenant (else SEALOG_API_KEY).")
@click.option("--tenant", required=True, help="The tenant whose log to watch.")
@click.option("--verifier-key", required=True, help="The log's verifier key (its text, or a file holding it).")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the kept checkpoints, their history and any alarm's evidence go.")
@click.option("--once", is_flag=True, help="Check one time: exit 0 when consistent, 1 on an alarm.")
@click.option("--interval", default=60.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between checks (without --once).")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for each answer.")
@log_name_option
def witness(server: str, api_key: str, tenant: str, verifier_key: str, state_dir: Path, once: bool,
            interval: float, timeout: float, log_name: str | None) -> None:
    """Watch a log's checkpoints; on a rewrite, a cut or two trees, print the evidence and exit 1."""
    import signal
    import threading

    try:
        from ._witness import Witness, run
    except ImportError as exc:  # httpx
        fail(f"`witness` needs httpx (pip install 'sealog[server]'): {exc}")
    watcher = Witness(server, api_key, tenant, ckpt.load_verifier(verifier_key), state_dir, ckpt.log_name(log_name),
                      timeout=timeout)
    stop = threading.Event()
    previous = {} if once else {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = run(watcher, once=once, interval=interval, stop=stop, say=click.echo,
                   complain=lambda line: click.echo(line, err=True))
    finally:
        watcher.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    sys.exit(code)


@main.command()
@url_option
@click.option("--tenant", required=True)
@click.option("--before", "when", required=True,
              help="RFC 3339, or a span back from now (90d): remove the events that occurred before it.")
@signing_key_option
@log_name_option
def prune(url: str | None, tenant: str, when: str, signing_key: str | None, log_name: str | None) -> None:
    """Remove a tenant's old events, keeping what verify and the proofs need; recorded as an event."""
    from ._prune import PruneTampered
    from ._prune import prune as run

    policy = ckpt.Checkpoints.configure(signing_key, name=log_name)
    with opened(url) as store:
        try:
            result = run(tree_store(store), tenant, when, policy)
        except (PruneTampered, ckpt.TreeRewritten) as exc:
            fail(str(exc), EXIT_CHECK_FAILED)
    click.echo(str(result))


main.add_command(redact_check)


def _register_optional_commands() -> None:
    """Commands whose extras may be missing: their modules import the drivers lazily."""
    for module, names in (("sealog.broker.cli", ("consume",)), ("sealog.server.cli", ("serve", "keys"))):
        try:
            loaded = importlib.import_module(module)
        except ImportError:
            continue
        for name in names:
            command = getattr(loaded, name, None)
            if isinstance(command, click.Command):
                main.add_command(command, name)


_register_optional_commands()
