"""``sealog serve`` and ``sealog keys``; the web stack is imported only when they run."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .._log import resolve_url

if TYPE_CHECKING:
    from .._log import AuditLog
    from .keys import KeyStore


@click.command()
@click.option("--url", envvar="SEALOG_URL", default=None, help="Store URL (else SEALOG_URL, else ./sealog.db).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes serving one socket, each with its own writer; a dead one is restarted.")
@click.option("--demo", is_flag=True, help="Seed a demo tenant with events and print a key for it.")
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds for a request line and headers to arrive; slower connections are closed.")
@click.option("--body-timeout", default=30.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds for a request body to arrive once its headers have (else 408).")
@click.option("--keep-alive-timeout", default=5, show_default=True, type=click.IntRange(1),
              help="Seconds an idle keep-alive connection stays open.")
@click.option("--max-connections", default=1000, show_default=True, type=click.IntRange(1),
              help="Open connections (per worker) beyond which new requests get 503.")
@click.option("--secure-cookies", is_flag=True,
              help="Mark the session cookie Secure on every request (behind a TLS proxy); "
                   "requests that came over TLS always get it.")
@click.option("--ssl-certfile", default=None, type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS.")
@click.option("--ssl-keyfile", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--verifier-key", envvar="SEALOG_VERIFIER_KEY", default=None,
              help="Checks checkpoint signatures in the viewer (the key's text or a file holding it).")
@click.option("--checkpoint-every", default=60.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between automatic checkpoint signatures (with SEALOG_SIGNING_KEY set).")
def serve(url: str | None, host: str, port: int, workers: int, demo: bool, header_timeout: float,
          body_timeout: float, keep_alive_timeout: int, max_connections: int, secure_cookies: bool,
          ssl_certfile: str | None, ssl_keyfile: str | None, verifier_key: str | None,
          checkpoint_every: float) -> None:
    """HTTP API and viewer; each worker process has its own writer."""
    try:
        from .guard import Limits
        from .workers import ServeOptions, Supervisor
        from .workers import serve as run_service
    except ImportError as exc:
        click.echo(f"sealog: `serve` needs the server extra (pip install 'sealog[server]'): {exc}", err=True)
        sys.exit(2)
    from .._errors import StoreUnavailable
    from .._log import AuditLog
    from .keys import KeyStore

    if workers > 1 and resolve_url(url).startswith("memory:"):
        click.echo("sealog: --workers needs a store the processes share (sqlite or postgresql), "
                   "not memory://", err=True)
        sys.exit(2)
    limits = Limits(header_timeout=header_timeout, body_timeout=body_timeout, keep_alive=keep_alive_timeout,
                    max_connections=max_connections)
    log = AuditLog(url, checkpoint_every=checkpoint_every)
    options = ServeOptions(log.url, host, port, limits, secure_cookies, ssl_certfile, ssl_keyfile, verifier_key,
                           checkpoint_every)
    scheme = "https" if ssl_certfile else "http"
    try:
        keys = KeyStore(log.url)
        try:
            keys.migrate()
        except StoreUnavailable as exc:
            click.echo(f"sealog: the store is not reachable: {exc}", err=True)
            sys.exit(3)
        if demo:
            seed_demo(log, keys)
        if workers > 1:
            if not log.close(30):  # the workers' own AuditLogs take over; what is left is claimed by them
                click.echo("sealog: the demo events are still in the spool; the workers deliver them", err=True)
            sys.exit(Supervisor(options, workers, lambda line, err: click.echo(line, err=err)).run())
        click.echo(f"sealog: serving {log.url.split('@')[-1]} on {scheme}://{host}:{port}/  "
                   "(API, viewer, /openapi.json)")
        run_service(options, log, keys)
    finally:
        log.close()


def seed_demo(log: AuditLog, keys: KeyStore) -> None:
    """A populated tenant ``acme`` (once) and a fresh key for it, printed."""
    from .._demo import record_demo

    if not log.flush(30):
        click.echo(f"sealog: the store is not reachable: {log.stats()['last_error']}", err=True)
        sys.exit(3)
    if not any(h.tenant_id == "acme" for h in log._reader().heads()):
        record_demo(log, 400)
        log.emit(tenant_id="acme", action="content.publish", actor=("agent", "publisher"),
                 metadata={"caption": "<script>alert(1)</script> is shown as text"})
        log.flush(30)
    _, secret = keys.create("acme", "demo")
    click.echo(f"demo tenant 'acme', API key: {secret}")


@click.group()
def keys() -> None:
    """API keys for the service: create, list, revoke."""


@keys.command("create")
@click.option("--url", envvar="SEALOG_URL", default=None)
@click.option("--tenant", default=None, help="The tenant this key may act for.")
@click.option("--admin", is_flag=True, help="A key for every tenant.")
@click.option("--name", default="", help="A label for `keys list`.")
def create(url: str | None, tenant: str | None, admin: bool, name: str) -> None:
    """Print a new key once; only its hash is stored."""
    from .keys import KeyStore

    if admin == bool(tenant):
        click.echo("sealog: give exactly one of --tenant T or --admin", err=True)
        sys.exit(2)
    key, secret = KeyStore(resolve_url(url)).create(None if admin else tenant, name)
    click.echo(secret)
    click.echo(f"key id {key.key_id} for {'every tenant' if admin else repr(tenant)}; "
               "store it now, it is not shown again", err=True)


@keys.command("list")
@click.option("--url", envvar="SEALOG_URL", default=None)
def list_keys(url: str | None) -> None:
    """Key ids, scopes and states (never the keys)."""
    from .keys import KeyStore

    for key in KeyStore(resolve_url(url)).list():
        scope = "admin" if key.admin else f"tenant {key.tenant_id}"
        state = f"revoked {key.revoked_at}" if key.revoked_at else "active"
        click.echo(f"{key.key_id}  {scope}  {key.name or '-'}  created {key.created_at}  {state}")


@keys.command("revoke")
@click.argument("key_id")
@click.option("--url", envvar="SEALOG_URL", default=None)
def revoke(key_id: str, url: str | None) -> None:
    """Stop a key working (within seconds in a running service)."""
    from .keys import KeyStore

    if not KeyStore(resolve_url(url)).revoke(key_id):
        click.echo(f"sealog: no active key {key_id!r}", err=True)
        sys.exit(2)
    click.echo(f"revoked {key_id}")
