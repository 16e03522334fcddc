"""The forms a secret may come back in from a provider: encoded, escaped, in another case."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable
from urllib.parse import quote, quote_plus


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
        secret.encode("unicode_escape").decode("ascii"),  # as pricing_values.shown quotes
        # Encoders that escape more than they must: `_`, `-`, `.`, `~` too (t%5FKEY...), or
        # every byte. Letters of either case match (`find` searches a lower-cased copy).
        _escaped(secret, keep=str.isalnum),
        _escaped(secret, keep=lambda c: False),
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
        # Percent-escaped so (`P%E4ssw%F6rd`, as a latin-1 form posts it), whole or mixed:
        # `_atom` knows each character's 8-bit escapes.
    return frozenset(form for form in forms if form)


def whole_encodings(secret: str) -> frozenset[str]:
    """The forms a secret is masked in only whole, never as a start cut short: its UTF-8 bytes
    in hex (`50524f...`; either case, as the search is of a lower-cased text). A start of it
    is digits often enough (`503` for `P3...`) that a text ending in a number would lose it."""
    return frozenset({secret.encode("utf-8", "surrogatepass").hex()} if secret else ())


def _escaped(secret: str, *, keep: Callable[[str], bool]) -> str:
    """`secret` percent-encoded as UTF-8, every character but the ASCII ones `keep` keeps."""
    return "".join(c if c.isascii() and keep(c) else percent(c).upper() for c in secret)


def percent(c: str) -> str:
    """`c`'s UTF-8 bytes percent-encoded, hex digits in lower case."""
    return "".join(f"%{b:02x}" for b in c.encode("utf-8", "surrogatepass"))


def lower(text: str) -> str:
    """`text` lower-cased, one character for one: the one letter lower() makes two (U+0130,
    I with a dot) becomes i, so that places in the copy are places in the text."""
    return text.replace("\u0130", "i").lower()


def atom(c: str) -> str:
    """`c` in a lower-cased text: itself, or its UTF-8 bytes percent-encoded (escapes first:
    the longest is taken); a space a `+` too. Escapes of its other case too: a provider that
    quotes a secret in capitals may encode it after."""
    variants = [v for v in (c, c.lower(), c.upper()) if len(v) == 1]
    escapes = {percent(v) for v in variants}
    # A legacy form (latin-1, cp1252) escapes a non-ASCII letter's one byte: `%e4` for `ä`.
    escapes |= {
        f"%{v.encode(legacy)[0]:02x}"
        for v in variants
        for legacy in ("latin-1", "cp1252")
        if not v.isascii() and _encodable(v, legacy)
    }
    plain = [re.escape(lower(c))] + (["\\+"] if c == " " else [])
    if c == "%":  # not the start of an escape of itself cut at the end (`%2`): `cut` takes it
        plain = [r"%(?![0-9a-f](?:\Z|\.\.\.|\u2026))"]
    return "(?:" + "|".join(sorted(escapes) + plain) + ")"


def _encodable(c: str, encoding: str) -> bool:
    try:
        c.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True
