"""The exceptions sealog raises into callers: only for the caller's own mistakes."""

from __future__ import annotations


class SealogError(Exception):
    """Base class of every sealog exception."""


class InvalidEvent(SealogError, ValueError):
    """The event the caller built is not acceptable; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.index: int | None = None
        """The event's position, when it came in a batch."""

    def at(self, index: int) -> InvalidEvent:
        self.index = index
        return self


class SpoolFull(SealogError):
    """The local spool reached its size cap and the configured policy gave up waiting."""


class StoreUnavailable(SealogError):
    """The store (or broker) cannot be reached now; the operation may succeed later."""


class EventRejected(SealogError):
    """The store refused an event on its own (a row-level error, not an outage).

    Stores raise it only for errors that are about the data of a row; the writer then
    isolates the event by bisection and quarantines it once a sibling was stored, which
    proves the store itself is fine. Anything a store cannot classify is an outage
    (StoreUnavailable): when in doubt, the events stay in the spool.
    """


class InvalidQuery(SealogError, ValueError):
    """A query argument (pattern, cursor, time span) is malformed."""
