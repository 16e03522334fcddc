"""Secrets out of a provider's whole answer: masked where they stand in it (in its JSON strings
whatever their escapes too), and looked for in the views a reader may take of it (decoded as
UTF-16, its HTML character references or escapes read) that masking in place does not see. A
CCV answer passed back to a client is masked so (`masked_answer`); so is the start of an answer
a log line shows (`answer_snippet`), which a reader may take yet more views of."""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Final

from reconciler import strict_json
from reconciler.redact import (
    MASK,
    MIN_BODY_FRAGMENT,
    SecretForms,
    held,
    mask,
    redact_body,
    squeezed_forms,
    text_forms,
)

__all__ = ("HELD_SECRET", "SNIPPET_HELD", "answer_snippet", "masked_answer")


# A JSON string in a JSON text: outside strings, no other token holds a `"`.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)

# Said in place of an answer whose secret a client would read in a view that the masking in
# place does not see (`_held_still`).
HELD_SECRET = "CCV's answer held a secret of this config; it is not passed on"


def masked_answer(body: bytes, secrets: Iterable[str]) -> tuple[bytes, bool]:
    """Return CCV's answer with every secret it echoed masked (`redact_body`), and whether it is
    UTF-8 JSON written again. A JSON answer (in UTF-8, -16 or -32) may echo one in an escape no
    list of forms covers (`t_Ab\\u002BCd`, `\\/`, `\\u0074\\u005f...`): each of its strings
    (keys too) that, decoded, holds one is masked as a body is and written again, the rest as it
    came. An answer that still holds one when read as a client may (`_held_still`) is
    reconciler's word instead, `{"error": HELD_SECRET}`."""
    secrets = held(secrets)
    forms = text_forms(secrets)
    if forms is None:
        return body, False
    masked, again = _masked_in_place(body, secrets, forms)
    if _held_still(masked, forms):
        return json.dumps({"error": HELD_SECRET}).encode(), True
    return masked, again


def _masked_in_place(
    body: bytes, secrets: tuple[str, ...], forms: SecretForms
) -> tuple[bytes, bool]:
    """`body` with every secret masked where it stands (`masked_answer`), and whether it is
    UTF-8 JSON written again."""
    again = _json_masked(body, forms)
    return redact_body(body if again is None else again, secrets), again is not None


def _masked_text(text: str, forms: SecretForms) -> str:
    """`text`, a view of an answer or one of its strings, masked as `redact_body` masks a
    body: a start of a secret it ends with, or cut before an ellipsis, from its 8th character
    on."""
    return mask(text, forms, at_end=MIN_BODY_FRAGMENT)


def _json_masked(body: bytes, forms: SecretForms) -> bytes | None:
    """`body`, a JSON text, written again as UTF-8 with each string that holds a secret once
    its escapes are read masked; None when it is no JSON, or nothing was masked."""
    encoding = json.detect_encoding(body)
    if encoding == "utf-8" and b"\\" not in body:
        return None  # the textual forms see every string as is
    try:
        strict_json.loads_answer(body)
        text = body.decode(encoding, "surrogatepass")
    except (ValueError, RecursionError):
        return None

    def masked(found: re.Match[str]) -> str:
        if encoding == "utf-8" and "\\" not in found[0]:
            return found[0]  # as it came: the textual masking after sees it
        decoded = json.loads(found[0])
        # A string's end is no cut (a JSON string ending in a secret's first word is no start
        # of it): only one before an ellipsis is.
        shown = _masked_text(decoded + "\n", forms)[:-1]
        return found[0] if shown == decoded else json.dumps(shown)

    again = _JSON_STRING.sub(masked, text)
    return None if again == text else again.encode("utf-8", "surrogatepass")


def _held_still(body: bytes, forms: SecretForms) -> bool:
    """Whether `body`, masked in place, holds a secret in a view a client may read of it:
    decoded as its BOM or first bytes say (UTF-16 or -32, which `ccv submit` would print with
    its NULs as spaces), its HTML character references read (`&#x74;`), its JSON or JavaScript
    escapes read where it is no JSON text (JSONP, a `<script>`), twice; or these together."""
    utf8 = body.decode("utf-8", "replace")
    texts = {utf8}
    encodings = {json.detect_encoding(body)}
    if b"\x00" in body:  # UTF-16 with no BOM that begins with no ASCII letter
        encodings |= {"utf-16-le", "utf-16-be"}
    texts |= {body.decode(e, "replace") for e in encodings - {"utf-8", "utf-8-sig"}}
    texts |= {html.unescape(text) for text in texts if "&" in text}
    read = {_unescaped(text) for text in texts if "\\" in text}
    # Once more over what that read: JSON quoted in a JSON string (a gateway quoting CCV's
    # error, `\"key t\\u002B...`) escapes each escape again. Two passes bound the work.
    texts |= read | {_unescaped(text) for text in read if "\\" in text}
    # The UTF-8 view is the one `body` was masked in: masking it again finds nothing.
    return any(_masked_text(text, forms) != text for text in texts - {utf8})


# A JSON or JavaScript escape: `\\u0074`, `\\x74`, `\\/`, `\\n`.
_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|(["\\/bfnrt]))')
_SHORT: Final[Mapping[str, str]] = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _unescaped(text: str) -> str:
    """`text` with its JSON and JavaScript escapes read, a surrogate pair one character."""
    read = _ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)) if m[3] is None else _SHORT[m[3]], text)
    return read.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# Said in a log line in place of an answer's start that holds a secret of the config in a view
# that masking in place does not see (HTML character references).
SNIPPET_HELD = "(not shown: it holds a secret of this config)"
# How much of an answer its start is read from: enough for any start a log line shows, blanks
# run together; little enough to read on the event loop (an answer may be 8 MiB).
SNIPPET_SOURCE_BYTES = 16 * 1024


def answer_snippet(body: bytes, secrets: Iterable[str], chars: int) -> str:
    """The first `chars` characters of an answer for a log line: decoded as its BOM or first
    bytes say (UTF-16 or -32), blanks run together (a line end inside a secret is one blank),
    every secret masked as in an answer passed on (`masked_answer`), and where a reader of the
    line would read one all the same: across a blank, a start of one (of a few characters)
    cut short before an ellipsis or at the end, in base64. One held in a view masking in place
    does not see is SNIPPET_HELD. Masked whole, then cut: no cut leaves a secret's start."""
    head = body[:SNIPPET_SOURCE_BYTES]
    raw = head.decode(json.detect_encoding(head), "replace")
    secrets = held(secrets)
    forms = text_forms(secrets)
    if forms is None:
        return " ".join(raw.split())[:chars]
    # Masked as it came first: a secret with blanks inside (`Kx7  pQ2`) is no longer itself
    # once they are run together; then again, a line end inside one being a blank now.
    masked, _ = _masked_in_place(raw.encode("utf-8"), secrets, forms)
    text = " ".join(masked.decode("utf-8", "replace").split())
    masked, _ = _masked_in_place(text.encode("utf-8"), secrets, forms)
    if _held_still(masked, forms):
        return SNIPPET_HELD
    # Across a blank, a secret is looked for with its own blanks left out too.
    squeezed = squeezed_forms(secrets) or forms
    shown = _base64_masked(_across_blanks(masked.decode("utf-8", "replace"), squeezed), forms)
    # A provider's cut (`Zq9+pw!...`) or ours: a start of a secret before it is masked from
    # `mask`'s fewest characters on, as at the end of any text we cut.
    pieces = _CUTS.split(shown)
    shown = "".join(p if p in _ELLIPSES else mask(p, forms) for p in pieces)
    return mask(shown[:chars], forms)


_ELLIPSES = ("...", "\u2026")
_CUTS = re.compile(r"(\.\.\.|\u2026)")


def _across_blanks(text: str, forms: SecretForms) -> str:
    """`text` with a secret that a blank splits (a line wrapped inside it, run together into
    one blank) masked, the blank with it."""
    if " " not in text:
        return text
    kept = [at for at, c in enumerate(text) if c != " "]
    pieces: list[str] = []
    start = 0
    for first, last in forms.find(text.replace(" ", ""), MIN_BODY_FRAGMENT):
        pieces += [text[start : kept[first]], MASK]
        start = kept[last - 1] + 1
    return "".join(pieces) + text[start:]


# A run of base64 (either alphabet) long enough to hold a secret's start.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")


def _base64_masked(text: str, forms: SecretForms) -> str:
    """`text` with each run of base64 masked whose decoded bytes hold a secret (a gateway
    quoting the post's body so)."""

    def masked(found: re.Match[str]) -> str:
        run = found[0].rstrip("=")
        for altchars in (b"+/", b"-_"):
            try:
                raw = base64.b64decode(run + "=" * (-len(run) % 4), altchars, validate=True)
            except binascii.Error:
                continue
            view = raw.decode("utf-8", "replace")
            if mask(view, forms, at_end=MIN_BODY_FRAGMENT) != view:
                return MASK
        return found[0]

    return _BASE64.sub(masked, text)
