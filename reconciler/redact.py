"""Secrets out of texts we keep: every encoding of each secret is masked before a text is cut.

A provider may echo what we sent it (the CCNow password travels form-encoded) in an error text,
and may cut that text itself; we cut texts too. Masking first and cutting after means no cut
can leave a piece of a secret that a later full-text search would miss.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, quote_plus

from .config import MissingSecret, Secret

MASK = "***"
# A text that ends with this many characters of a secret, or more, was cut inside the secret.
MIN_FRAGMENT = 3
# The same for a provider's whole answer passed on (`redact_body`): only a provider's own cut
# could end it inside a secret, and three letters end many a word ("Order created").
MIN_BODY_FRAGMENT = 8


def encodings(secret: str) -> frozenset[str]:
    """Return the forms a secret may come back in: as sent, percent/form-encoded, escaped."""
    forms = {
        secret,
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        quote_plus(secret, safe=""),
        html.escape(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }
    # HTTP Basic: CCV's key is the user name with an empty password, echoed as the header was.
    for user in (secret, f"{secret}:"):
        encoded = base64.b64encode(user.encode("utf-8", "surrogatepass")).decode("ascii")
        forms |= {encoded, encoded.rstrip("=")}
    # Echoed back in an 8-bit encoding, a secret with a non-ASCII letter is not UTF-8: as a
    # text decoded with its stray bytes kept (surrogateescape) or replaced (U+FFFD) reads it.
    for legacy in ("latin-1", "cp1252"):
        try:
            raw = secret.encode(legacy)
        except UnicodeEncodeError:
            continue
        forms.add(raw.decode("utf-8", "surrogateescape"))
        forms.add(raw.decode("utf-8", "replace"))
    return frozenset(form for form in forms if form)


@dataclasses.dataclass(frozen=True)
class SecretForms:
    """The forms of some secrets, found in a text whatever its case (a provider may quote one in
    capitals), through a lower-cased copy: one case-sensitive search."""

    forms: tuple[str, ...]  # lower-cased, longest first
    pattern: re.Pattern[str]
    folded: re.Pattern[str]  # the same, case-insensitive: for a text lower() makes longer

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Return where the forms stand in `text`, leftmost first, longest at each place."""
        low = text.lower()
        if len(low) == len(text):  # each character its own lower-case one: places agree
            return [m.span() for m in self.pattern.finditer(low)]
        return [m.span() for m in self.folded.finditer(text)]

    def cut_end(self, text: str, fewest: int = MIN_FRAGMENT) -> int:
        """Return how long a start of a secret the text ends with (the provider cut it there),
        if at least `fewest` characters."""
        longest = 0
        for form in self.forms:
            for size in range(min(len(form) - 1, len(text)), fewest - 1, -1):
                if size <= longest:
                    break
                if text[len(text) - size :].lower() == form[:size]:
                    longest = size
                    break
        return longest


@lru_cache(maxsize=64)
def secret_forms(secrets: frozenset[str]) -> SecretForms | None:
    """Return the forms of `secrets` as one search, or None when there are none."""
    forms = sorted({form.lower() for secret in secrets for form in encodings(secret)}, key=len)
    if not forms:
        return None
    # Longest first, so that a form is never masked only in part by a shorter one.
    alternatives = "|".join(map(re.escape, forms[::-1]))
    return SecretForms(
        tuple(forms[::-1]), re.compile(alternatives), re.compile(alternatives, re.IGNORECASE)
    )


def holds_secret(text: str, forms: SecretForms | None) -> bool:
    """Whether `text` holds a whole secret in any of its forms, in any case: a status word or a
    reference that echoes one is kept nowhere. (Runs for every answer of a catch-up: a start
    of a secret cut short is looked for in error texts only, by `redact`.)"""
    if forms is None:
        return False
    low = text.lower()
    if len(low) == len(text):
        return forms.pattern.search(low) is not None
    return forms.folded.search(text) is not None


# A provider that cuts a text it quotes inside a secret may say so: "Zq9+pw&x=7%Se... refused".
_ELLIPSIS = re.compile(r"\.\.\.|\u2026")


def _masked(text: str, forms: SecretForms, fewest_at_end: int) -> str:
    """Return `text` with the secrets' forms masked, and the start of one (MIN_BODY_FRAGMENT
    characters or more) before an ellipsis or (`fewest_at_end` or more) at the end."""
    pieces: list[str] = []
    start = 0
    for first, last in forms.spans(text):
        pieces += [_cuts_masked(text[start:first], forms), MASK]
        start = last
    rest = _cuts_masked(text[start:], forms)
    cut = forms.cut_end(rest, fewest_at_end)
    pieces.append(rest[: len(rest) - cut] + MASK if cut else rest)
    return "".join(pieces)


def _cuts_masked(text: str, forms: SecretForms) -> str:
    """Return `text` with the start of a secret before each ellipsis masked."""
    # Right to left: each cut found leaves the places before it as they were.
    for ellipsis in reversed(list(_ELLIPSIS.finditer(text))):
        at = ellipsis.start()
        cut = forms.cut_end(text[:at], MIN_BODY_FRAGMENT)
        if cut:
            text = text[: at - cut] + MASK + text[at:]
    return text


def redact(text: str, secrets: Iterable[str], *, limit: int | None = None) -> str:
    """Return `text` with every encoding of every secret masked, then cut to `limit` chars."""
    forms = secret_forms(frozenset(s for s in secrets if s))
    if forms is not None:
        text = _masked(text, forms, MIN_FRAGMENT)
    if limit is not None and len(text) > limit:
        text = text[:limit]
    return text


def redact_body(body: bytes, secrets: Iterable[str]) -> bytes:
    """Return a provider's answer with every encoding of every secret masked, for passing it on
    whole: the rest byte for byte as it came (a text that is not UTF-8, escapes in lower case)."""
    forms = secret_forms(frozenset(s for s in secrets if s))
    if forms is None:
        return body
    # surrogateescape: bytes that are not UTF-8 go back out as they came.
    text = body.decode("utf-8", "surrogateescape")
    masked = _masked(text, forms, MIN_BODY_FRAGMENT)
    return body if masked == text else masked.encode("utf-8", "surrogateescape")


def config_secrets(value: object) -> list[str]:
    """Return the value of every Secret in a config tree (dataclasses, sequences, mappings)."""
    found: list[str] = []
    if isinstance(value, MissingSecret):
        pass  # not loaded: nothing of it can be in a text
    elif isinstance(value, Secret):
        found.append(value.reveal())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            found += config_secrets(getattr(value, item.name))
    elif isinstance(value, (list, tuple, frozenset, set)):
        for item in value:
            found += config_secrets(item)
    elif isinstance(value, dict):
        for item in value.values():
            found += config_secrets(item)
    return found
