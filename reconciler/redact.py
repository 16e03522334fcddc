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

# A percent escape, or its start where a text was cut: hex digits in either case.
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{1,2}")


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


@lru_cache(maxsize=64)
def _pattern(secrets: frozenset[str]) -> tuple[re.Pattern[str], tuple[str, ...]] | None:
    forms = sorted({form for secret in secrets for form in encodings(secret)}, key=len)[::-1]
    if not forms:
        return None
    # A provider may cut a secret it quotes inside its text ("password Zq9+pw&x=7%Se... refused"):
    # a start of one, MIN_BODY_FRAGMENT characters or more, is masked wherever it stands; and
    # in any case (a provider may quote it in capitals).
    starts = {form[:n] for form in forms for n in range(MIN_BODY_FRAGMENT, len(form))}
    # Longest first, so that a form is never masked only in part by a shorter one.
    alternatives = sorted({*forms, *starts}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, alternatives)), re.IGNORECASE), tuple(forms)


def redact(text: str, secrets: Iterable[str], *, limit: int | None = None) -> str:
    """Return `text` with every encoding of every secret masked, then cut to `limit` chars."""
    compiled = _pattern(frozenset(s for s in secrets if s))
    if compiled is not None:
        pattern, forms = compiled
        text = _upper_escapes(text)
        text = pattern.sub(MASK, text)
        cut = _cut_end(text, forms)
        text = text[: len(text) - cut] + MASK if cut else text
    if limit is not None and len(text) > limit:
        text = text[:limit]
    return text


def redact_body(body: bytes, secrets: Iterable[str]) -> bytes:
    """Return a provider's answer with every encoding of every secret masked, for passing it on
    whole: the rest byte for byte as it came (a text that is not UTF-8, escapes in lower case)."""
    compiled = _pattern(frozenset(s for s in secrets if s))
    if compiled is None:
        return body
    pattern, forms = compiled
    # surrogateescape: bytes that are not UTF-8 go back out as they came.
    text = body.decode("utf-8", "surrogateescape")
    # Secrets are found in the text with upper-case escapes, which has the same length: each
    # match is at the same place in the text as it came, which is what is kept around it.
    upper = _upper_escapes(text)
    pieces: list[str] = []
    start = 0
    for match in pattern.finditer(upper):
        pieces += [text[start : match.start()], MASK]
        start = match.end()
    cut = _cut_end(upper[start:], forms, MIN_BODY_FRAGMENT)
    if not pieces and not cut:
        return body
    pieces.append(text[start : len(text) - cut] + MASK if cut else text[start:])
    return "".join(pieces).encode("utf-8", "surrogateescape")


def _upper_escapes(text: str) -> str:
    # Percent escapes are case-insensitive; ours are upper case, some servers write lower.
    return _PERCENT_ESCAPE.sub(lambda m: m[0].upper(), text)


def _cut_end(text: str, forms: tuple[str, ...], fewest: int = MIN_FRAGMENT) -> int:
    """Return how long a start of a secret the text ends with (the provider cut it there), if
    at least `fewest` characters."""
    longest = 0
    for form in forms:
        for size in range(min(len(form) - 1, len(text)), fewest - 1, -1):
            if size <= longest:
                break
            if text.endswith(form[:size]):
                longest = size
                break
    return longest


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
