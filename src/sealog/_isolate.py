"""Finding the one event a store refuses, without blaming events for an outage.

The writer and the broker consumer share this rule. A store raises ``EventRejected``
only for errors about a row's data; even then the rejection is taken as the event's
fault only once bisection has *proven* it: a sibling of the same batch was stored, so the
store itself accepts writes. A store that refuses everything (a trigger, a permission, a
schema that does not fit) never gets that proof, and the refusal is treated as an
outage: the events wait. When in doubt, keep the event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from ._errors import EventRejected, StoreUnavailable

T = TypeVar("T")


class Unproven(StoreUnavailable):
    """Every write of the batch was refused: nothing shows it is the events' fault."""


UNPROVEN_AFTER: Final = 32
"""Refused single events before bisection gives up looking for a stored sibling."""


def isolate(items: Sequence[T], write: Callable[[Sequence[T]], bool],
            reject: Callable[[T, str], None]) -> bool:
    """Write ``items``, splitting around what the store refuses; False when ``write`` gave up.

    ``write`` retries outages itself and returns False only when abandoned (shutdown);
    it raises EventRejected when the store refused the part it was given. ``reject`` is
    called for each proven-bad item once the bisection is over. Raises Unproven, and
    rejects nothing, when no part of the batch could be stored.
    """
    try:
        return write(items)
    except EventRejected as exc:
        first = str(exc)
    refused: list[tuple[T, str]] = []
    stored = False

    def bisect(part: Sequence[T]) -> bool:
        nonlocal stored
        if not stored and len(refused) >= UNPROVEN_AFTER:
            raise Unproven(f"the store refused {len(refused)} events one by one and stored none: {first}")
        middle = len(part) // 2
        for half in (part[:middle], part[middle:]):
            try:
                if not write(half):
                    return False
                stored = True
            except EventRejected as exc:
                if len(half) == 1:
                    refused.append((half[0], str(exc)))
                elif not bisect(half):
                    return False
        return True

    if len(items) > 1 and not bisect(items):
        return False
    if not stored:
        raise Unproven(f"the store refused every event of the batch, so nothing shows it is theirs: {first}")
    for item, reason in refused:
        reject(item, reason)
    return True
