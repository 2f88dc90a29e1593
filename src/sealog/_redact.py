"""Secret scrubbing, applied at emit before anything reaches the spool.

A key that looks secret has its whole value replaced; string values anywhere are
searched for token shapes (bearer tokens, JWTs, AWS keys, ``key=value`` secrets,
private key blocks). The same walk checks that numbers and keys are JSON that
RFC 8785 can keep, and copies nothing when there is nothing to scrub.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Final

from ._errors import InvalidEvent
from ._event import MAX_SAFE_INT

REDACTED: Final = "[REDACTED]"

DEFAULT_KEYS: Final = (
    r"pass(?:word|wd|phrase)?", r"pwd", r"secret", r"token", r"api[-_ ]?key", r"authorization",
    r"cookie", r"session", r"private[-_ ]?key", r"credit[-_ ]?card", r"card[-_ ]?number",
    r"\bcc[-_]?num", r"cvv", r"cvc", r"\bssn\b", r"social[-_ ]?security", r"access[-_ ]?key",
    r"signature", r"\botp\b", r"\bpin\b",
)
"""Searched, case-insensitively, in every key at any depth."""

_SECRET_WORDS = r"password|passwd|pwd|secret|token|api[-_]?key|access[-_]?key|client[-_]?secret"

DEFAULT_VALUES: Final = (
    r"(?i:bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*",
    r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    r"(?i:\b(?:sk|pk|rk)_(?:live|test)_[0-9a-z]{10,})",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
)
"""Searched in every string value; each match is replaced."""

_KEY_VALUE = re.compile(rf"(?i)\b((?:{_SECRET_WORDS})\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;\"']+)")

# Every default value rule needs one of these in the string; most values have none,
# and this short search costs a fraction of running every rule.
_DEFAULT_HINT: Final = re.compile(r"[=:\s_]|eyJ|AKIA|ASIA|-----")


class Redactor:
    """Scrubs secrets from JSON-like values; build one per configuration and reuse it."""

    def __init__(
        self,
        keys: Iterable[str] = DEFAULT_KEYS,
        values: Iterable[str] = DEFAULT_VALUES,
        *,
        extra_keys: Iterable[str] = (),
        extra_values: Iterable[str] = (),
    ) -> None:
        key_list = [*keys, *extra_keys]
        value_list = [*values, *extra_values]
        self._keys = re.compile("|".join(key_list), re.IGNORECASE) if key_list else None
        self._values = re.compile("|".join(value_list)) if value_list else None
        self._key_cache: dict[str, bool] = {}
        defaults = tuple(value_list) == DEFAULT_VALUES
        self._hint: re.Pattern[str] | None = _DEFAULT_HINT if defaults else None

    def secret_key(self, key: str) -> bool:
        known = self._key_cache.get(key)
        if known is None:
            known = self._keys is not None and self._keys.search(key) is not None
            if len(self._key_cache) >= 4096:
                self._key_cache.clear()
            self._key_cache[key] = known
        return known

    def text(self, value: str) -> str:
        """The string with token-shaped secrets replaced (the same object when none)."""
        hint = self._hint
        if hint is not None and (len(value) < 5 or hint.search(value) is None):
            return value
        scrubbed = value if self._values is None else self._values.sub(REDACTED, value)
        scrubbed = _KEY_VALUE.sub(lambda m: m.group(1) + REDACTED, scrubbed)
        return value if scrubbed == value else scrubbed

    def redact(self, value: Any, field: str = "metadata", depth: int = 0) -> Any:
        """A scrubbed value, checked to be JSON that RFC 8785 can keep.

        Returns the very same object when nothing needed scrubbing (the common case, and
        free of copies); never modifies the caller's objects.
        """
        kind = type(value)
        if kind is str:
            return self.text(value)
        if value is None or kind is bool:
            return value
        if kind is int:
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                raise InvalidEvent(field, f"integer {value} is outside +-(2**53-1), which JSON keeps")
            return value
        if kind is float:
            if not math.isfinite(value):
                raise InvalidEvent(field, f"{value} is not a JSON number")
            return value
        if depth > 64:
            raise InvalidEvent(field, "nested deeper than 64 levels")
        if isinstance(value, dict):
            copy: dict[str, Any] | None = None
            cache = self._key_cache
            for key, item in value.items():
                secret = cache.get(key)
                if secret is None:
                    if not isinstance(key, str):
                        raise InvalidEvent(field, f"object key {key!r} is not a string")
                    secret = self.secret_key(key)
                if secret and item is not None:
                    new = REDACTED
                elif type(item) is str:  # inlined: most values are short plain strings
                    new = self.text(item)
                else:
                    new = self.redact(item, field, depth + 1)
                if new is not item:
                    if copy is None:
                        copy = dict(value)
                    copy[key] = new
            return value if copy is None else copy
        if isinstance(value, list | tuple):
            items = [self.redact(item, field, depth + 1) for item in value]
            if kind is list and all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return items
        return value  # datetime, UUID, ...: msgspec encodes them as strings or rejects them


DEFAULT: Final = Redactor()
