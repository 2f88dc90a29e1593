"""Action patterns, AMQP topic style: ``*`` is exactly one word, ``#`` zero or more."""

from __future__ import annotations

import re
from functools import lru_cache

from ._errors import InvalidQuery

_WORD = re.compile(r"[a-z0-9_-]+|\*|#")


def check(pattern: str) -> str:
    if not pattern or not all(_WORD.fullmatch(word) for word in pattern.split(".")):
        raise InvalidQuery(
            f"action pattern {pattern!r}: use lower-case dotted words, '*' for one word, "
            "'#' for any number"
        )
    return pattern


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A regex that full-matches ``'.' + action``; the leading dot lets ``#`` match nothing."""
    pieces = []
    for word in check(pattern).split("."):
        if word == "#":
            pieces.append(r"(?:\.[^.]+)*")
        elif word == "*":
            pieces.append(r"\.[^.]+")
        else:
            pieces.append(r"\." + re.escape(word))
    return re.compile("".join(pieces))


def matches(pattern: str, action: str) -> bool:
    return compile_pattern(pattern).fullmatch("." + action) is not None


def literal_prefix(pattern: str) -> tuple[str, bool]:
    """The words before the first wildcard, and whether the pattern has any wildcard.

    Stores turn the prefix into an index range so a pattern query stays indexed.
    """
    words = check(pattern).split(".")
    literal: list[str] = []
    for word in words:
        if word in ("*", "#"):
            return ".".join(literal), True
        literal.append(word)
    return pattern, False


def to_posix_regex(pattern: str) -> str:
    """The same pattern as an anchored POSIX regex over ``'.' || action`` (PostgreSQL ``~``)."""
    body = compile_pattern(pattern).pattern
    return "^" + body.replace("(?:", "(") + "$"
