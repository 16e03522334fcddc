"""One CCV write call, sent once: never retried, since CCV's write calls are not known to be
idempotent. The caller learns whether CCV answered, surely got nothing, or may have got it."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterable
from typing import NamedTuple

import aiohttp
from aiohttp import hdrs
from yarl import URL

from reconciler import strict_json
from reconciler.config import CCVConfig
from reconciler.redact import MIN_BODY_FRAGMENT, SecretForms, mask, redact_body, text_forms
from reconciler.sources.ccv import auth_headers
from reconciler.store.not_sent import ANSWER_HEAD_UNREAD, UNDECODABLE_ANSWER
from reconciler.writes import once
from reconciler.writes.once import NotSent, Uncertain

__all__ = [
    "HELD_SECRET",
    "MAX_ANSWER_BYTES",
    "Answer",
    "NotSent",
    "Uncertain",
    "masked_answer",
    "send_once",
    "sendable",
]

MAX_ANSWER_BYTES = 1024 * 1024


class Answer(NamedTuple):
    """CCV's answer, whatever its status: a 4xx or 5xx is a definite answer too."""

    status: int
    body: bytes
    content_type: str
    location: str | None = None  # absolute: a redirect's, or a `201 Created`'s
    retry_after: str | None = None  # a 429's or 503's Retry-After, as it is passed on
    # reconciler's word where the body is its own, not CCV's (CCV's was too large, broke, or
    # could not be decoded):
    # said in place of CCV's body (`Result.own`)
    own: str | None = None
    # What came of a body whose framing then broke: whole, it may name the order CCV made
    # (`submit_outcome.close`); never passed on.
    came: bytes = b""

    def passed_headers(self) -> dict[str, str]:
        """Return CCV's headers passed on with its answer: Location, and Retry-After (seconds,
        or an HTTP date as IMF-fixdate: `retry_after.passed_retry_after`)."""
        named = {"Location": self.location, "Retry-After": self.retry_after}
        return {name: value for name, value in named.items() if value is not None}


# What no header of an answer may hold (RFC 9110 5.5: a control character but the tab; aiohttp
# refuses the whole answer for one), and what is no latin-1 letter (a byte that was not UTF-8,
# which aiohttp's client reads as a surrogate, cannot be written at all).
_UNSENDABLE = re.compile(r"[^\t\x20-\x7e\xa0-\xff]")

# The longest header value passed on: aiohttp's client refuses a header line over 8190 bytes
# (CCV's are read up to 64 KiB), and the whole answer with it, a submit that succeeded taken
# for one CCV never answered.
MAX_HEADER_CHARS = 4096


def sendable(value: str) -> bool:
    """Whether a header value of CCV's can be passed on as it is."""
    return len(value) <= MAX_HEADER_CHARS and _UNSENDABLE.search(value) is None


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
    secrets = tuple(secrets)
    forms = text_forms(secrets)
    if forms is None:
        return body, False
    again = _json_masked(body, forms)
    masked = redact_body(body if again is None else again, secrets)
    if _held_still(masked, forms):
        return json.dumps({"error": HELD_SECRET}).encode(), True
    return masked, again is not None


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
_SHORT = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescaped(text: str) -> str:
    """`text` with its JSON and JavaScript escapes read, a surrogate pair one character."""
    read = _ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)) if m[3] is None else _SHORT[m[3]], text)
    return read.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


async def send_once(
    session: aiohttp.ClientSession,
    config: CCVConfig,
    method: str,
    path: str,
    payload: bytes,
    *,
    gate: asyncio.Semaphore,
    halt: asyncio.Event | None = None,
) -> Answer:
    """Send one JSON request to a CCV account, within its bound `gate`; raise NotSent, Uncertain
    (an answer lost, or one that began but whose status line and headers could not be read:
    ANSWER_HEAD_UNREAD) or Stopping (`halt` was set while it waited for its turn: not sent),
    never retry. An answer whose status came but whose body could not be passed on (too large,
    cut short, not within the timeout, malformed, undecodable) is CCV's status and Location with
    reconciler's word (`Answer.own`)."""
    base = URL(config.base_url)
    url = base.with_path(base.raw_path.rstrip("/") + path, encoded=True)
    headers = {**auth_headers(config), hdrs.CONTENT_TYPE: "application/json"}
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    try:
        reply = await once.send_once(
            session,
            method,
            url,
            headers=headers,
            data=payload,
            timeout=timeout,
            gate=gate,
            max_body=MAX_ANSWER_BYTES,
            halt=halt,
        )
    except once.AnswerTooLarge as exc:
        own = f"CCV answered HTTP {exc.status}, but its answer was too large to pass on"
        # Its Location kept: it may be where CCV says the order is (`store/not_sent.refusal`).
        return _own_answer(exc.status, exc.location, own)
    except once.BodyBroke as exc:
        broke = {
            "timeout": f"the body of its answer did not come within {config.timeout_s:g} s "
            "(the account's timeout)",
            once.MALFORMED: "the rest of its answer could not be read (malformed HTTP)",
        }.get(str(exc), "the body of its answer was cut short (the connection broke)")
        own = f"CCV answered HTTP {exc.status}, but {broke}"
        came = b"" if exc.came is None else exc.came.body
        return _own_answer(exc.status, exc.location, own)._replace(came=came)
    except once.HeadUnread:
        # CCV (or a proxy) answered: whether it said it made the order is not known.
        raise Uncertain(ANSWER_HEAD_UNREAD) from None
    except once.UndecodableAnswer as exc:
        # CCV (or a proxy) answered: the request reached it, and is never sent again.
        if exc.status is None:
            raise Uncertain(UNDECODABLE_ANSWER) from None
        # Its body unread, as one cut short: a 2xx may have named the order (`answer_unread`).
        own = f"CCV answered HTTP {exc.status}, but its body could not be read ({exc})"
        return _own_answer(exc.status, exc.location, own)
    return Answer(
        reply.status, reply.body, reply.content_type_header, reply.location, reply.retry_after
    )


def _own_answer(status: int, location: str | None, own: str) -> Answer:
    """CCV's status and Location with reconciler's word for the body it could not pass on."""
    body = json.dumps({"error": own}).encode()
    return Answer(status, body, "application/json", location, own=own)


def not_ccv_json(answer: Answer) -> str | None:
    """Why a 2xx is not CCV's own answer, its media type (`text/html`; `none` when it named
    none), or None when it is: CCV answers JSON (NOTES.md), and a body that is no JSON, an
    empty one too, came from something between reconciler and CCV (a gateway's or a login
    page served with 200), which says nothing of what CCV did. A 204 says it has no body."""
    if not 200 <= answer.status < 300 or answer.status == 204 or answer.own is not None:
        return None
    try:
        strict_json.loads_answer(answer.body, constants=False)
    except (ValueError, RecursionError):
        kind = answer.content_type.split(";", 1)[0].strip().lower()
        return kind[:MAX_MEDIA_TYPE_CHARS] or "none"
    return None


# Enough for any registered media type; what a gateway writes there is not passed on whole.
MAX_MEDIA_TYPE_CHARS = 80
