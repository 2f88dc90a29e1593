"""``sealog redact-check``: which redaction rule fires where on a payload, and what is stored.

So users can test their own payloads (and their custom rules' effect) before an event
carries one to disk. Secrets are shown masked unless ``--show``: the output of a check
often lands in CI logs.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ._redact import DEFAULT, Finding


def _masked(text: str) -> str:
    """A hint of what matched without the secret: its first characters, when long, and length."""
    head = text[:4] if len(text) >= 16 else ""
    return f"{head}...({len(text)} chars)"


def _parsed(raw: str) -> tuple[Any, bool]:
    """The payload as JSON if it is JSON, else as text."""
    try:
        return json.loads(raw), True
    except ValueError:
        return raw, False


def _line(finding: Finding, show: bool) -> str:
    where = finding.path if finding.start is None else f"{finding.path}[{finding.start}:{finding.end}]"
    return f"{where}  {finding.rule}  {finding.replaced if show else _masked(finding.replaced)}"


@click.command("redact-check")
@click.argument("value", default="-")
@click.option("--field", default="metadata", show_default=True, help="The name the paths start with.")
@click.option("--show", is_flag=True, help="Print the replaced text in full, not masked.")
def redact_check(value: str, field: str, show: bool) -> None:
    """Show which redaction rule fires where in VALUE (JSON or text; '-' reads stdin), then the result."""
    raw = sys.stdin.read().removesuffix("\n") if value == "-" else value
    payload, is_json = _parsed(raw)
    findings = DEFAULT.explain(payload, field)
    if not findings:
        click.echo("no secrets found")
    for finding in findings:
        click.echo(_line(finding, show))
    scrubbed = DEFAULT.redact(payload, field)
    click.echo("redacted:")
    click.echo(json.dumps(scrubbed, ensure_ascii=False, indent=2) if is_json else scrubbed)
