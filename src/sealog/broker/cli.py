"""``sealog consume``: the broker to store service. The main CLI registers ``consume`` from here.

Exit codes: 0 after SIGTERM/SIGINT (the batch in hand stored and acked), 2 usage or
input error, 3 broker or store unreachable at start. Later outages are ridden out.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click

from .._errors import InvalidQuery, StoreUnavailable
from .._log import default_spool_dir, resolve_url
from .._patterns import check as check_pattern
from ..stores import open_store
from .consumer import DEFAULT_DELIVERY_LIMIT, QUEUE_TYPES
from .publisher import DEFAULT_EXCHANGE, broker_urls

EXIT_USAGE, EXIT_UNREACHABLE = 2, 3
log = logging.getLogger("sealog")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"sealog: {message}", err=True)
    sys.exit(code)


def stats_path(store_url: str, queue: str) -> Path:
    """Where a consumer's health record goes unless told: beside the store's spool."""
    return default_spool_dir(store_url) / f"consume-{queue}.json"


def claim_stats_file(path: Path, *, chosen: bool) -> tuple[Path, int]:
    """The stats file (and, beside it, the attempts file) this consumer alone writes, and its lock.

    Competing consumers of one queue on one host would otherwise share the default file and
    overwrite each other's crash counts: the second takes ``consume-QUEUE.1.json``, and so on.
    A file named with ``--stats-file`` that another live consumer holds is a usage error.
    """
    candidates = [path] if chosen else [path, *(path.with_name(f"{path.stem}.{n}{path.suffix}") for n in range(1, 64))]
    for candidate in candidates:
        candidate.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(candidate.with_name(candidate.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return candidate, fd  # held (the fd stays open) until the process exits
    raise ValueError(f"another running consumer writes {path}: give each consumer its own --stats-file")


def _check_options(broker: str, bindings: tuple[str, ...], queue_type: str, delivery_limit: int | None) -> None:
    """Usage errors (and a missing extra) first, before anything connects: exit 2."""
    try:
        for pattern in bindings:
            check_pattern(pattern)
    except InvalidQuery as exc:
        _fail(f"--bind: {exc}", EXIT_USAGE)
    if delivery_limit is not None and queue_type != "quorum":
        _fail("--delivery-limit needs --queue-type quorum (classic queues count no deliveries)", EXIT_USAGE)
    try:
        broker_urls(broker)
    except ValueError as exc:
        _fail(f"--broker: {exc}", EXIT_USAGE)
    try:
        import pika  # noqa: F401  # only to report a missing extra clearly
    except ImportError:
        _fail("sealog consume needs the rabbitmq extra: pip install 'sealog[rabbitmq]'", EXIT_USAGE)


@click.command()
@click.option("--broker", envvar="SEALOG_BROKER_URL", required=True,
              help="amqp://user:pass@host:port/vhost, or a cluster's nodes amqp://user:pass@h1:p1,h2:p2/vhost "
                   "(else SEALOG_BROKER_URL).")
@click.option("--exchange", default=DEFAULT_EXCHANGE, show_default=True, help="Durable topic exchange.")
@click.option("--queue", required=True, help="Durable queue to declare and consume.")
@click.option("--bind", "bindings", multiple=True, required=True,
              help="Action pattern to bind (AMQP topic style); repeatable.")
@click.option("--default-tenant", default=None, help="Tenant for bodies that name none.")
@click.option("--dead-letter", default=None, help="Dead-letter exchange and queue [default: QUEUE.dead].")
@click.option("--url", envvar="SEALOG_URL", default=None,
              help="Store URL (else SEALOG_URL, else sqlite:///sealog.db).")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--batch-delay", default=50, show_default=True, type=click.IntRange(0, 60_000),
              help="Milliseconds a partial batch waits for more messages.")
@click.option("--prefetch", default=None, type=click.IntRange(1, 65_535),
              help="Unacked messages in flight [default: 2 x batch size].")
@click.option("--queue-type", type=click.Choice(QUEUE_TYPES), default="classic", show_default=True,
              help="quorum: replicated on a cluster's nodes, with a delivery limit.")
@click.option("--delivery-limit", type=click.IntRange(1, 1_000_000), default=None,
              help=f"Quorum queues: returns before the broker dead-letters a message [default: "
                   f"{DEFAULT_DELIVERY_LIMIT}].")
@click.option("--stats-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Health record, rewritten every interval [default: consume-QUEUE.json in the spool dir].")
@click.option("--stats-interval", default=30.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between health log lines and stats file updates.")
def consume(broker: str, exchange: str, queue: str, bindings: tuple[str, ...], default_tenant: str | None,
            dead_letter: str | None, url: str | None, batch_size: int, batch_delay: int,
            prefetch: int | None, queue_type: str, delivery_limit: int | None, stats_file: Path | None,
            stats_interval: float) -> None:
    """Consume audit events from RabbitMQ into the store, each exactly once."""
    from .consumer import BrokerUnavailable, Consumer, Settings, TopologyConflict

    _check_options(broker, bindings, queue_type, delivery_limit)
    store_url = resolve_url(url)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        log.setLevel(logging.INFO)
        # pika logs every failed connection attempt at ERROR with a traceback; sealog says
        # what matters in one line (and counts reconnects), so keep pika to its criticals.
        logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        store = open_store(store_url)
        store.migrate()
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    except StoreUnavailable as exc:
        _fail(f"store unreachable: {exc}", EXIT_UNREACHABLE)
    try:
        claimed, _lock = claim_stats_file(stats_file or stats_path(store_url, queue), chosen=stats_file is not None)
    except (OSError, ValueError) as exc:
        store.close()
        _fail(f"--stats-file: {exc}", EXIT_USAGE)
    settings = Settings(
        broker=broker, exchange=exchange, queue=queue, bindings=bindings,
        dead_letter=dead_letter or f"{queue}.dead", default_tenant=default_tenant,
        batch_size=batch_size, batch_delay=batch_delay / 1000, prefetch=prefetch or 2 * batch_size,
        stats_file=claimed, stats_interval=stats_interval,
        queue_type=queue_type, delivery_limit=delivery_limit or DEFAULT_DELIVERY_LIMIT)
    consumer = Consumer(settings, store)
    try:
        try:
            consumer.connect()
        except ValueError as exc:
            _fail(str(exc), EXIT_USAGE)
        except BrokerUnavailable as exc:
            _fail(str(exc), EXIT_UNREACHABLE)
        except TopologyConflict as exc:
            _fail(str(exc), EXIT_USAGE)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("sealog consume: %s received; finishing the batch in hand",
                     signal.Signals(signum).name)
            consumer.stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        consumer.report()  # the stats file exists as soon as the consumer serves
        log.info("sealog consume: queue %s bound to %s on %s; store %s; stats in %s", queue,
                 ", ".join(bindings), exchange, store_url.rpartition("@")[2], settings.stats_file)
        try:
            consumer.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        store.close()
