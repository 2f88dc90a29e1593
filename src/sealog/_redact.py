"""Secret scrubbing, applied at emit before anything reaches the spool, the WAL or a log line.

Two kinds of rule:

- **Key names.** A key whose name looks secret has its whole value replaced, whatever its
  type (a dict or list under ``password`` goes entirely; ``None`` stays, it hides nothing).
  Names are matched in a normalized form: camelCase and any separators become single
  spaces, lower-cased, with a space at each end (``X-Api-Key`` -> ``" x api key "``), so
  ``db_password``, ``userPassword``, ``refreshToken`` and ``customer_ssn`` match as whole
  words while ``pinned``, ``spinner`` and ``passage`` do not. Custom ``keys``/``extra_keys``
  patterns are searched in that same normalized form.
  *Judgement call:* a name pairing a secret word with a word that describes it rather than
  holds it (``token_count``, ``password_changed_at``, ``token_type``, ``session_timeout``,
  ``prompt_tokens``; see ``_DESCRIBING``) is kept: its value is a count, a time or a kind,
  which an audit trail needs. Its strings still go through the value rules.
- **Value shapes**, searched in every string at any depth: ``key=value`` / ``key: value`` /
  JSON / Python-dict text for a secret-named key with any prefix (``db_password=``,
  ``?access_token=``, ``{'password': 'x'}``), ``Cookie:`` headers, URL user-info,
  ``Bearer``/``Basic`` credentials, JWTs, PEM private keys and provider tokens with a fixed
  shape. Only the secret part is replaced (``postgresql://u:[REDACTED]@host/db``).

Pattern sources. Coverage follows detect-secrets 1.5 (its keyword list and provider
plugins) and Microsoft's ``microsoft-security-utilities-secret-masker`` 1.0.0b4 (its
precisely classified and generic patterns: URL credentials, JWTs, OAuth bearer, NuGet, npm,
Databricks, Azure AD client secrets); their shapes are our test list. Neither is a
dependency: both run every pattern over every string (the masker took 110-150 us for one
short string here; detect-secrets is a file scanner), while emit scrubs about ten strings
per event in a few microseconds. Here one pass of a trie of literals over the lower-cased
string (each rule's triggers, below, and the key words) finds which rules could match at
all; only those run, and most strings (ids, codes, user agents) trigger none. Strings
shorter than ``_SHORT`` without ``:`` or ``=``, and lower-case hex (UUIDs, checksums),
cannot hold any default shape and skip even that. Azure's "identifiable" keys
(checksummed suffixes such as ``+ASt``) are left to their key names and ``AccountKey=``:
their shape needs a costly look-back.

The redactor does not validate: the pipeline checks the JSON before calling it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final, NamedTuple

import ahocorasick_rs

REDACTED: Final = "[REDACTED]"
# isinstance() on hot paths takes tuples: ``list | tuple`` would build a union type per call.
_CONTAINERS: Final = (dict, list, tuple, str)
_SEQUENCES: Final = (list, tuple)

# -- key names -------------------------------------------------------------------------

# Words that describe a secret rather than hold it: a key naming one of them is kept.
_DESCRIBING = (
    "count|counts|type|types|kind|len|length|size|ttl|exp|expiry|expires|expired|expiration|lifetime|"
    "duration|timeout|age|at|on|date|time|timestamp|changed|updated|created|rotated|last|policy|strength|"
    "required|enabled|disabled|valid|invalid|verified|consent|is|has|name|used|remaining|limit|attempts|"
    "status|format|algorithm|alg|scope|scopes|issuer|version"
)
_TOKEN_COUNTS = "prompt|completion|input|output|max|total|cached|reasoning"  # LLM usage figures

_SECRET_WORDS = (
    r"pass(?:word|wd|phrase)(?!less)", r" pass ", r"pwd|pswd| pw ", r"secret(?!ar)", r"credential",
    r"tokens? ", r"api ?keys? ",
    r"(?:access|private|priv|secret|client|auth|account|master|encryption|signing|session|shared|app|"
    r"consumer|license) ?keys? ",
    r"authorization|bearer", r"cookies? ", r" session(?: ?ids?)? |sessionid", r"signature",
    r" (?:jwts?|otp|totp|hotp|pin|ssn|cvv2?|cvc2?|csc|cvn|sig) ",
    r"credit ?cards? |card ?(?:number|num|no) | cc ?(?:num|number|no) ",
    r"social ?security|security ?codes? |(?:mfa|2fa|otp|verification) ?codes? ",
)

DEFAULT_KEYS: Final = (
    rf"^(?!.* (?:{_DESCRIBING}) )(?!.* (?:{_TOKEN_COUNTS}) tokens? ).*?(?:{'|'.join(_SECRET_WORDS)})",
)
"""Searched in every key's normalized form (see the module docstring)."""

# Every name DEFAULT_KEYS accepts holds one of these, lower-cased, as written.
_KEY_ANCHORS = (
    "pass", "pw", "pswd", "secret", "credential", "token", "key", "auth", "bearer", "cookie", "session",
    "sig", "card", "cc", "cvv", "cvc", "csc", "cvn", "ssn", "social", "security", "otp", "pin", "jwt",
    "mfa", "2fa", "verification",
)
_ANCHOR_SET = frozenset(_KEY_ANCHORS)

# -- value shapes ----------------------------------------------------------------------

_B64URL = r"[A-Za-z0-9_\-]"

DEFAULT_VALUES: Final = (
    r"(?#cookie-header:cookie)(?i:cookie)[ \t]*:[ \t]*(?P<s>[^\r\n\"']+)",
    r"(?#url-userinfo:://)://(?<=[A-Za-z0-9+.\-]://)[^\s:/?#@\"'<>]*:(?P<s>[^\s/\"'<>]+)@",
    r"(?#bearer:bearer)(?i:bearer)(?<![A-Za-z0-9]......)\s+[A-Za-z0-9\-._~+/]{8,}=*",
    r"(?#basic-auth:basic)(?i:basic)(?<![A-Za-z0-9].....)\s+(?=[A-Za-z0-9+/]?[a-z]*[A-Z0-9+/=])"
    r"[A-Za-z0-9+/]{8,}=*",
    rf"(?#jwt:eyj)eyJ{_B64URL}{{4,}}\.eyJ{_B64URL}{{4,}}\.{_B64URL}*",
    r"(?#private-key:-----begin)-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
    r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|$)",
    r"(?#github-token:ghp_,gho_,ghu_,ghs_,ghr_,github_pat_)"
    r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
    r"(?#gitlab-token:glpat-,gldt-,glft-,glsoat-,glrt-,glcbt-,glptt-,gloas-)"
    r"gl(?:pat|dt|ft|soat|rt|cbt|ptt|oas)-[A-Za-z0-9_\-]{20,}",
    r"(?#slack-token:xox,xapp-)(?:xox[abposr]-[A-Za-z0-9\-]{10,}|xapp-[0-9]-[A-Za-z0-9\-]{10,})",
    r"(?#slack-webhook:hooks.slack.com)hooks\.slack\.com/services/(?P<s>[A-Za-z0-9_/]{10,})",
    r"(?#stripe-key:_live_,_test_,whsec_)(?:(?i:[spr]k_(?:live|test)_)[0-9A-Za-z]{10,}|whsec_[A-Za-z0-9]{24,})",
    r"(?#aws-access-key-id:akia,asia,abia,acca,a3t)"
    r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])(?<![A-Z0-9]....)[A-Z0-9]{16}(?![A-Z0-9])",
    rf"(?#google-api-key:aiza)AIza{_B64URL}{{35}}",
    rf"(?#google-oauth:ya29.,gocspx-)(?:ya29\.{_B64URL}{{20,}}|GOCSPX-{_B64URL}{{20,}})",
    rf"(?#openai-style-key:sk-)sk-(?<![A-Za-z0-9_\-]sk-){_B64URL}{{20,}}",
    r"(?#npm-token:npm_)npm_[A-Za-z0-9]{30,}",
    rf"(?#sendgrid-key:sg.)SG\.{_B64URL}{{16,}}\.{_B64URL}{{16,}}",
    r"(?#pypi-token:pypi-)pypi-AgE[A-Za-z0-9_\-]{50,}",
    r"(?#huggingface-token:hf_)hf_(?<![A-Za-z0-9_]hf_)[A-Za-z0-9]{30,}",
    r"(?#shopify-token:shpat_,shpca_,shppa_,shpss_)shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
    r"(?#databricks-token:dapi)dapi(?<![A-Za-z0-9]dapi)[0-9a-f]{32}(?:-[0-9])?",
    r"(?#nuget-key:oy2)oy2(?<![A-Za-z0-9]oy2)[a-z2-7]{43}",
    r"(?#square-token:sq0)sq0(?:csp|atp)-[0-9A-Za-z_\-]{22,}",
    r"(?#mailchimp-key:-us)(?<![0-9a-f])[0-9a-f]{32}-us[0-9]{1,2}(?![0-9])",
    r"(?#azure-ad-client-secret:q~)(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}[78]Q~[A-Za-z0-9_~.\-]{31,34}",
)
"""Searched in every string. ``(?#name:trigger,...)`` names the rule and lists lower-case
literals one of which any match holds (the rule runs only when one is in the string); a
``(?P<s>...)`` group limits the replacement to that part, else the whole match goes. Extra
patterns without triggers run on every string."""

# A default-rule match needs at least this many characters, or a ':' or '=' (key=value,
# cookie, URL); shorter strings without either are returned at once. Checked by a test.
_SHORT: Final = 14
# Nor can lower-case hex with dashes (UUIDs, trace ids, SHA-256 checksums), so common in
# ids that it gets its own quick exit.
_HEX: Final = "0123456789abcdef-"

# key=value text: a key anchor, the rest of the name, an assignment; then a value.
_KEY_VALUE_RULE = "key-value"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_ASSIGN = r"(?P<assign>(?:\\?[\"'])?[ \t]*(?:=>|:=|[:=])[ \t]*)"
_VALUE: Final = re.compile(
    r"\"(?P<s0>(?:[^\"\\\r\n]|\\.)*)\"|'(?P<s1>[^'\r\n]*)'|\\\"(?P<s2>(?:[^\"\\]|\\[^\"])*)\\\""
    r"|(?P<s3>(?:(?i:bearer|basic|digest|token|negotiate|ntlm)[ \t]+)?"
    # '&', ',' and ';' end a bare value only before a space, the end or the next name=value
    r"(?:[^\s&,;\"'\\]|[&,;](?![\s&,;]|$|[A-Za-z0-9_.\-]+[=:]))+)"
)
_VALUE_GROUPS = ("s0", "s1", "s2", "s3")
_GENERIC_KEY_VALUE: Final = re.compile(rf"(?<![A-Za-z0-9_.\-])[A-Za-z0-9_.\-]{{1,80}}+{_ASSIGN}")


def _trie(literals: Iterable[str]) -> str:
    """An alternation of literals grouped by first character, so ``re`` can skip to candidates."""
    by_first: dict[str, list[str]] = {}
    for literal in sorted(set(literals), key=lambda s: (-len(s), s)):
        by_first.setdefault(literal[0], []).append(re.escape(literal[1:]))
    return "|".join(f"{re.escape(first)}(?:{'|'.join(rest)})" for first, rest in sorted(by_first.items()))


_ANCHORED_KEY_VALUE: Final = re.compile(rf"(?:{_trie(_KEY_ANCHORS)})[a-z0-9_.\-]*+{_ASSIGN}")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD = re.compile(r"[^A-Za-z0-9]+")
_HEADER = re.compile(r"^\(\?#([^):]*)(?::([^)]*))?\)")
_SECRET_GROUP = re.compile(r"\(\?P<s>")


def normalized(name: str) -> str:
    """The form key patterns are searched in: ``'userPassword'`` -> ``' user password '``."""
    return f" {_NON_WORD.sub(' ', _CAMEL.sub(' ', name)).strip().lower()} "


def _find(automaton: ahocorasick_rs.AhoCorasick, lower: str) -> list[str]:
    """The trigger literals in ``lower``; a lone surrogate (which emit refuses later, by
    name) cannot cross into Rust, and no literal holds one, so it becomes '?' for the search."""
    try:
        return automaton.find_matches_as_strings(lower, overlapping=True)
    except UnicodeEncodeError:
        return automaton.find_matches_as_strings(lower.encode("utf-8", "replace").decode(), overlapping=True)


def _lower(value: str) -> str:
    """``value.lower()`` with every character in place (a few, like 'İ', grow when lowered)."""
    lower = value.lower()
    if len(lower) == len(value):
        return lower
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in value)


class Finding(NamedTuple):
    """One replacement: where, by which rule, and what it replaced."""

    path: str
    """Where in the value: ``metadata.db.url``, ``metadata.items[2]``."""
    rule: str
    """``key-name`` for a secret-named key, ``key-value`` for ``name=value`` text, else the
    value rule's name (``url-userinfo``, ``github-token``, ...)."""
    replaced: str
    """The text replaced (``repr`` of a non-string value under a secret key)."""
    start: int | None = None
    """Offsets of ``replaced`` in the string at ``path``; None when the whole value went."""
    end: int | None = None


class _Rule(NamedTuple):
    name: str
    regex: re.Pattern[str]
    secret_groups: tuple[str, ...]


def _rule(index: int, pattern: str) -> tuple[_Rule, tuple[str, ...]]:
    """A compiled value rule and its trigger literals (none: it runs on every string)."""
    header = _HEADER.match(pattern)
    name = header.group(1) if header else f"custom-{index + 1}"
    triggers = tuple(t for t in (header.group(2) or "").split(",") if t) if header else ()
    groups: list[str] = []

    def rename(_: re.Match[str]) -> str:
        groups.append(f"s{len(groups)}")
        return f"(?P<{groups[-1]}>"

    return _Rule(name, re.compile(_SECRET_GROUP.sub(rename, pattern)), tuple(groups)), triggers


class Redactor:
    """Scrubs secrets from JSON-like values; build one per configuration and reuse it."""

    def __init__(
        self,
        keys: Iterable[str] = DEFAULT_KEYS,
        values: Iterable[str] = DEFAULT_VALUES,
        *,
        extra_keys: Iterable[str] = (),
        extra_values: Iterable[str] = (),
        allow_keys: Iterable[str] = (),
        allow_values: Iterable[str] = (),
    ) -> None:
        """``keys`` replace the key-name rules, ``extra_keys`` add to them (both searched in
        the normalized name); ``values``/``extra_values`` likewise for string shapes.
        ``allow_keys`` are names never treated as secret (compared normalized);
        ``allow_values`` are regexes: a candidate secret that fully matches one is kept."""
        key_list, extra_key_list = list(keys), list(extra_keys)
        all_keys = key_list + extra_key_list
        self._keys = re.compile("|".join(f"(?:{k})" for k in all_keys), re.IGNORECASE) if all_keys else None
        self._allow_keys = frozenset(normalized(k) for k in allow_keys)
        allowed = list(allow_values)
        self._allow = re.compile("|".join(f"(?:{v})" for v in allowed)).fullmatch if allowed else None
        self._key_cache: dict[str, bool] = {}

        self._always: list[_Rule] = []  # rules without triggers
        self._triggered: dict[str, list[_Rule]] = {}
        for index, pattern in enumerate([*values, *extra_values]):
            rule, triggers = _rule(index, pattern)
            if not triggers:
                self._always.append(rule)
            for trigger in triggers:
                self._triggered.setdefault(trigger.lower(), []).append(rule)
        # key=value text: anchored on the default key words, else every name=value is asked.
        self._key_value: re.Pattern[str] | None = None
        self._key_value_lower = False
        if all_keys:
            anchored = tuple(key_list) == DEFAULT_KEYS and not extra_key_list
            self._key_value = _ANCHORED_KEY_VALUE if anchored else _GENERIC_KEY_VALUE
            self._key_value_lower = anchored
            for anchor in _KEY_ANCHORS if anchored else ():
                self._triggered.setdefault(anchor, [])
        key_value_always = self._key_value is not None and not self._key_value_lower
        # One pass of an Aho-Corasick automaton (in Rust) finds every trigger literal at once:
        # ~5x faster than the same literals as a regex alternation, which Python's re tries at
        # each position. Overlapping, since one literal may end where the next begins.
        self._triggers = ahocorasick_rs.AhoCorasick(list(self._triggered)) if self._triggered else None
        self._scan_always = bool(self._always) or key_value_always
        self._short_cut = not self._scan_always and tuple(values) == DEFAULT_VALUES
        self.quick = self._triggers is not None and self._short_cut
        """Whether ``may_match`` over the gathered strings decides for a whole event (see ``redact_all``)."""
        self.known_keys = self._key_cache
        """``secret_key``'s cache, for walks that gather strings themselves (read it, never write)."""

    # -- keys ------------------------------------------------------------------------

    def secret_key(self, name: str) -> bool:
        """Whether a key of this name has its whole value replaced (cached: the hot path)."""
        known = self._key_cache.get(name)
        if known is None:
            form = normalized(name)
            known = (self._keys is not None and form not in self._allow_keys
                     and self._keys.search(form) is not None)
            if len(self._key_cache) >= 4096:
                self._key_cache.clear()
            self._key_cache[name] = known
        return known

    # -- strings ---------------------------------------------------------------------

    def text(self, value: str) -> str:
        """The string with secrets replaced; the very same object when there were none."""
        if self._short_cut and ((len(value) < _SHORT and ":" not in value and "=" not in value)
                                or not value.strip(_HEX)):
            return value
        return self._scan(value, "", None)

    def _scan(self, value: str, path: str, findings: list[Finding] | None) -> str:
        lower = ""
        rules: list[_Rule] = self._always
        triggers = self._triggers
        key_value = self._key_value is not None and not self._key_value_lower
        if triggers is not None:
            lower = _lower(value)
            found = _find(triggers, lower)
            if not found and not self._scan_always:
                return value  # the common case: no trace of any rule
            if found:
                rules = list(rules)
                triggered = self._triggered
                for literal in set(found):
                    rules += triggered[literal]
                    key_value = key_value or (self._key_value_lower and literal in _ANCHOR_SET)
        # Every key=value shape has an assignment: English words holding a key anchor
        # ("success" holds "cc", "shipping" holds "pin") cost two C-level searches, no regex.
        key_value = key_value and ("=" in value or ":" in value)
        if not rules and not key_value:
            return value
        spans: list[tuple[int, int, str]] = []
        for rule in dict.fromkeys(rules):  # a rule triggered twice runs once
            for match in rule.regex.finditer(value):
                start, end = match.span()
                for group in rule.secret_groups:
                    if match.start(group) >= 0:
                        start, end = match.span(group)
                        break
                spans.append((start, end, rule.name))
        if key_value:
            self._key_values(value, lower, spans)
        if not spans:
            return value
        return self._replace(value, spans, path, findings)

    def _key_values(self, value: str, lower: str, spans: list[tuple[int, int, str]]) -> None:
        """Spans of the values of ``name=value`` pairs whose name is a secret key."""
        regex = self._key_value
        assert regex is not None
        subject = lower if self._key_value_lower else value
        for match in regex.finditer(subject):
            name_start, name_end = match.start(), match.start("assign")
            while name_start > 0 and value[name_start - 1] in _NAME_CHARS:
                name_start -= 1
            if not self.secret_key(value[name_start:name_end]):
                continue
            found = _VALUE.match(value, match.end())
            if found is None:
                continue
            group = next(g for g in _VALUE_GROUPS if found.start(g) >= 0)
            spans.append((*found.span(group), _KEY_VALUE_RULE))

    def _replace(self, value: str, spans: list[tuple[int, int, str]], path: str,
                 findings: list[Finding] | None) -> str:
        """The value with the union of the spans replaced; overlapping spans merge."""
        allow = self._allow
        pieces: list[str] = []
        done = 0
        spans.sort()
        for start, end, rule in spans:
            secret = value[start:end]
            if end <= done or not secret or secret == REDACTED or (allow is not None and allow(secret)):
                continue
            begin = max(start, done)  # overlapping the previous replacement extends it
            if start >= done:
                pieces += [value[done:start], REDACTED]
            if findings is not None:
                findings.append(Finding(path, rule, value[begin:end], begin, end))
            done = end
        if not pieces:
            return value
        pieces.append(value[done:])
        return "".join(pieces)

    # -- values ----------------------------------------------------------------------

    def redact(self, value: Any, field: str = "metadata") -> Any:
        """A scrubbed copy of what needed scrubbing; the very same object when nothing did.

        Walks dicts, lists and tuples at any depth and never modifies the caller's objects.
        Takes JSON-like data the pipeline has already validated (leaf objects such as
        datetime, UUID or Decimal are left alone).
        """
        return self._walk(value, field, None)

    def redact_all(self, values: list[Any], fields: list[str]) -> list[Any]:
        """``redact`` over every value of one event, with one search for all their strings.

        The common event holds no secret: its strings are joined and searched for trigger
        literals once (one Aho-Corasick pass instead of one per string), and its keys are
        looked up in the key cache. Only when something could match does each value get the
        full walk. Returns the very same objects when nothing needed scrubbing.
        """
        texts: list[str] = []
        if not self.quick or not self._gather(values, texts) or self.may_match(texts):
            return [self._walk(v, f, None) for v, f in zip(values, fields, strict=True)]
        return values

    def may_match(self, texts: list[str]) -> bool:
        """Whether any rule could match in ``texts``: the strings of an event that could hold a
        secret (``_gather``), when ``quick``. False means redaction would change nothing."""
        if not texts:
            return False
        joined = "\n".join(texts)  # no trigger literal holds a newline, so none spans two strings
        assert self._triggers is not None
        found = _find(self._triggers, _lower(joined))
        if not found:
            return False
        # only key anchors in plain words ("success" holds "cc"), and no assignment: nothing to do
        return "=" in joined or ":" in joined or any(self._triggered[f] for f in set(found))

    def _gather(self, values: Iterable[Any], texts: list[str]) -> bool:
        """Collect the strings that could hold a secret (short ones without ``:`` or ``=``
        cannot, as in ``text``); False (do the full walk) at a secret-named key that holds
        something, or at a container or string of a subclass."""
        cache = self._key_cache
        for value in values:
            kind = type(value)
            if kind is str:
                if len(value) >= _SHORT or ":" in value or "=" in value:
                    texts.append(value)
            elif kind is dict:
                for key, item in value.items():
                    if item is None:
                        continue
                    secret = cache.get(key)
                    if secret is None:
                        secret = type(key) is str and self.secret_key(key)
                    if secret:
                        return False
                    item_kind = type(item)
                    if item_kind is str:
                        if len(item) >= _SHORT or ":" in item or "=" in item:
                            texts.append(item)
                    elif item_kind is int or item_kind is bool or item_kind is float:
                        continue
                    elif not self._gather((item,), texts):
                        return False
            elif kind is list or kind is tuple:
                if not self._gather(value, texts):
                    return False
            elif value is not None and isinstance(value, _CONTAINERS):
                return False
        return True

    def explain(self, value: Any, field: str = "metadata") -> list[Finding]:
        """Every replacement ``redact`` would make, with its path and rule, in walk order."""
        findings: list[Finding] = []
        self._walk(value, field, findings)
        return findings

    def _walk(self, value: Any, path: str, findings: list[Finding] | None) -> Any:
        kind = type(value)
        if kind is str:
            if self._short_cut and ((len(value) < _SHORT and ":" not in value and "=" not in value)
                                    or not value.strip(_HEX)):
                return value
            return self._scan(value, path, findings)
        if value is None or kind is bool or kind is int or kind is float:
            return value
        if isinstance(value, dict):
            copy: dict[Any, Any] | None = None
            cache = self._key_cache
            short_cut = self._short_cut
            for key, item in value.items():
                secret = cache.get(key)
                if secret is None:
                    secret = self.secret_key(key) if isinstance(key, str) else False
                here = "" if findings is None else f"{path}.{key}" if path else str(key)
                if secret:
                    new = self._whole(item, here, findings)
                elif type(item) is str:  # inlined: most values are short plain strings
                    if short_cut and ((len(item) < _SHORT and ":" not in item and "=" not in item)
                                      or not item.strip(_HEX)):
                        continue
                    new = self._scan(item, here, findings)
                else:
                    new = self._walk(item, here, findings)
                if new is not item:
                    if copy is None:
                        copy = dict(value)
                    copy[key] = new
            return value if copy is None else copy
        if isinstance(value, _SEQUENCES):
            changed: list[Any] | None = None
            for index, item in enumerate(value):
                new = self._walk(item, "" if findings is None else f"{path}[{index}]", findings)
                if new is not item:
                    if changed is None:
                        changed = list(value)
                    changed[index] = new
            if changed is None:
                return value
            return changed if isinstance(value, list) else tuple(changed)
        if isinstance(value, str):  # a str subclass, e.g. a StrEnum member
            scrubbed = self._scan(str.__str__(value), path, findings)
            return value if scrubbed == value else scrubbed
        return value  # datetime, UUID, Decimal, ...: nothing to scrub

    def _whole(self, item: Any, path: str, findings: list[Finding] | None) -> Any:
        """What the value of a secret-named key becomes."""
        if item is None or (type(item) is str and (item == REDACTED or (self._allow is not None
                                                                          and self._allow(item)))):
            return item
        if findings is not None:
            findings.append(Finding(path, "key-name", item if isinstance(item, str) else repr(item)))
        return REDACTED


DEFAULT: Final = Redactor()
