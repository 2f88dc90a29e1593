"""Redaction's own cost per event: the redactor before issue 10 against the new one.

The old redactor is loaded from git (``OLD_REV``, the last commit before the rewrite) and
run as a module beside the new one, in alternating batches. Three workloads:

- (a) metadata with ten ordinary strings (the issue's emit bench event);
- (b) a typical login event: user agent, request and correlation ids, five metadata keys;
- (c) values full of secrets: secret-named keys, tokens in text, a connection string.

Per event each contender does what its pipeline does: "old" scrubs metadata, proof,
before, after and error_message (the old emit); "new" also scrubs every top-level text
field (the new pipeline, _prepare.TEXT_FIELDS). "old, same fields" runs the old rules over
the new pipeline's fields, for a like-for-like comparison of the rule engines.
Figure: median over batches of the mean us per event. Bars: (a) new <= 1.0x old, and (b)
new <= 1.0x "old, same fields" (goal 0.5x). (c) is reported, not barred: a secret found
costs a replacement, and the new rules find several times more of them.
"""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import Bar, Contender, header, interleaved, median, parser, quantile, table, verdict
from sealog._redact import Redactor

OLD_REV = "a7703c0245b7a9072236da24537a5f9c9a7a7b0e"  # "Internal modules private": the old _redact.py
OLD_PATH = "src/sealog/_redact.py"
BATCH_SIZE = 200
JSON_FIELDS = ("metadata", "proof", "before", "after")
TEXT_FIELDS = ("actor_type", "actor_id", "target_type", "target_id", "user_agent", "request_id",
               "correlation_id", "span_id", "parent_event_id", "source", "error_code", "error_message")
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"


def old_redactor() -> Any:
    """The old module's DEFAULT redactor, executed from its source at OLD_REV."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{OLD_REV}:{OLD_PATH}"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("sealog._redact_before")
    module.__package__ = "sealog"  # its relative imports (._errors, ._event) resolve in sealog
    exec(compile(source, f"{OLD_REV[:7]}:{OLD_PATH}", "exec"), module.__dict__)
    return module.DEFAULT


def ordinary(i: int) -> dict[str, Any]:
    words = ("sso", "en-US", "dark", "web", "v2.3.1", "Acme Corp", "checkout page", "eu-west-1",
             "2024-05-01T12:00:00Z", "free trial", "Berlin", "order-4411")
    return {"tenant_id": "acme", "action": "content.publish", "actor_type": "user", "actor_id": f"u-{i % 997}",
            "target_type": "document", "target_id": f"doc-{i}",
            "metadata": {f"field_{k}": words[(i + k) % len(words)] for k in range(10)}}


def login(i: int) -> dict[str, Any]:
    return {"tenant_id": "acme", "action": "auth.login", "actor_type": "user", "actor_id": f"u-{i % 997}",
            "target_type": "session", "target_id": f"s-{i}", "user_agent": UA,
            "request_id": f"0190a6c2-7d5e-7b3a-9f1e-{i:012x}", "correlation_id": f"{i:032x}",
            "source": "api", "metadata": {"method": "password", "mfa": i % 2 == 0, "attempt": i % 5,
                                          "country": "DE", "client": "web"}}


def secretive(i: int) -> dict[str, Any]:
    token = f"ghp_{i:036d}"
    return {"tenant_id": "acme", "action": "integration.sync", "actor_type": "service", "actor_id": "sync-bot",
            "target_type": "repo", "target_id": "acme/api", "user_agent": f"sync/1.0 Bearer {i:032x}",
            "error_code": "E_AUTH", "error_message": f"login failed password=hunter{i} at postgresql://app:pw{i}@db/acme",
            "metadata": {"password": f"pw-{i}", "api_key": f"k-{i}", "note": f"used {token} and AKIA{i:016d}",
                         "headers": {"Authorization": f"Bearer {i:040x}", "Accept": "application/json"},
                         "dsn": f"redis://:secret{i}@cache:6379/0", "body": f'{{"refresh_token": "{i:x}"}}'},
            "before": {"smtp_password": "old"}, "after": {"smtp_password": "new"}}


Event = dict[str, Any]
Step = Callable[[Event], None]


def step(redactor: Any, text_fields: tuple[str, ...]) -> Step:
    redact, text = redactor.redact, redactor.text

    def run(event: Event) -> None:
        for name in text_fields:
            value = event.get(name)
            if value is not None:
                text(value)
        for name in JSON_FIELDS:
            value = event.get(name)
            if value is not None:
                redact(value, name)

    return run


def runner(events: list[Event], scrub: Step) -> Callable[[int], None]:
    def run(n: int) -> None:
        for event in events[:n]:
            scrub(event)

    return run


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("--batches", type=int, help="timed batches per contender (default 300, quick 20)")
    args = cli.parse_args()
    batches = args.batches or (20 if args.quick else 300)
    header("redaction cost per event, before and after issue 10", args.quick,
           batches=batches, batch_size=BATCH_SIZE, old=f"{OLD_REV[:7]}:{OLD_PATH}")
    old, new = old_redactor(), Redactor()
    contenders = {
        "old": step(old, ("error_message",)),
        "old, same fields": step(old, TEXT_FIELDS),
        "new": step(new, TEXT_FIELDS),
    }
    rows: list[tuple[object, ...]] = []
    ratios: dict[str, float] = {}
    for label, make in (("(a) ten ordinary strings", ordinary), ("(b) typical login", login),
                        ("(c) full of secrets", secretive)):
        events = [make(i) for i in range(BATCH_SIZE)]
        samples = interleaved([Contender(name, runner(events, scrub)) for name, scrub in contenders.items()],
                              batches=batches, batch_size=BATCH_SIZE)
        base = median(samples["old"])
        for name, s in samples.items():
            rows.append((label, name, median(s) / 1000, quantile(s, 0.1) / 1000, quantile(s, 0.9) / 1000,
                         median(s) / base))
        ratios[label] = median(samples["new"]) / base
        ratios[label + " same fields"] = median(samples["new"]) / median(samples["old, same fields"])
    table(("workload", "redactor", "median us/event", "p10", "p90", "ratio vs old"), rows)
    return verdict(
        [Bar("(a) new/old", ratios["(a) ten ordinary strings"], 1.0, 0.5, False),
         Bar("(b) new/old, same fields", ratios["(b) typical login same fields"], 1.0, 0.5, False)],
        args.check,
    )


if __name__ == "__main__":
    sys.exit(main())
