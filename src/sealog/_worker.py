"""The writer process: ``python -m sealog._worker store URL`` or ``... broker URL EXCHANGE [PER_MESSAGE]``.

Started by ProcessSink; speaks its frame protocol on stdin/stdout; exits at EOF.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys

from ._errors import EventRejected, StoreUnavailable
from ._sinks import LineSink, LocalSink


def open_sink(args: list[str]) -> LineSink:
    kind, target = args[0], args[1]
    if kind == "broker":
        from .broker.publisher import Publisher

        return Publisher(target, exchange=args[2], events_per_message=int(args[3]) if len(args) > 3 else 1)
    from .stores import open_store

    return LocalSink(open_store(target))


def serve(sink: LineSink) -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(5)
        if len(header) < 5 or header[:1] == b"Q":
            return
        payload = stdin.read(int.from_bytes(header[1:], "big"))
        try:
            if header[:1] == b"M":
                sink.migrate()
                reply = "OK {}"
            else:
                added, rejected = sink.write_lines(payload.split(b"\n"))
                reply = "OK " + json.dumps({"added": added, "rejected": rejected})
        except EventRejected as exc:  # the parent isolates the event by bisection
            reply = "BAD " + _one_line(str(exc))
        except StoreUnavailable as exc:
            reply = "DOWN " + _one_line(str(exc))
        except Exception as exc:  # unclassified: an outage, never the events' fault
            logging.getLogger("sealog").warning("unexpected store error, reported as an outage", exc_info=True)
            reply = "DOWN " + _one_line(f"unexpected {type(exc).__name__}: {exc}")
        stdout.write(reply.encode() + b"\n")
        stdout.flush()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the application decides when we stop
    # Hashing runs beside a thread that streams rows to the database (COPY); with the
    # default 5 ms switch interval the streaming thread waits on the GIL in convoys.
    sys.setswitchinterval(0.0005)
    # Delivery is background work: when the cores are busy, the application comes first.
    with contextlib.suppress(OSError):
        os.nice(5)
    logging.basicConfig(level=logging.WARNING, format="sealog writer process: %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # outages are reported by the writer, once
    sink = open_sink(sys.argv[1:])
    try:
        serve(sink)
    finally:
        sink.close()


if __name__ == "__main__":
    main()
