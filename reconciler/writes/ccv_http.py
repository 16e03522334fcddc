"""One CCV write call, sent once: never retried, since CCV's write calls are not known to be
idempotent. The caller learns whether CCV answered, surely got nothing, or may have got it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import NamedTuple

import aiohttp
from aiohttp import hdrs
from yarl import URL

from reconciler import strict_json
from reconciler.config import CCVConfig
from reconciler.redact import MASK, holds_secret, mask, redact_body, text_forms
from reconciler.sources.ccv import auth_headers
from reconciler.sources.http import parse_retry_after
from reconciler.store.not_sent import ANSWER_HEAD_UNREAD, UNDECODABLE_ANSWER
from reconciler.writes import once
from reconciler.writes.once import NotSent, Uncertain

__all__ = [
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
    retry_after: str | None = None  # a 429's or 503's Retry-After, passed on as it came
    # reconciler's word where the body is its own, not CCV's (CCV's was too large, broke, or
    # could not be decoded):
    # said in place of CCV's body (`Result.own`)
    own: str | None = None

    def passed_headers(self) -> dict[str, str]:
        """Return CCV's headers passed on with its answer: Location, and Retry-After when it is
        seconds or an HTTP date exactly (Python's date reader takes trailing junk, and a
        client's may not)."""
        named = {"Location": self.location}
        if self.retry_after is not None and retry_after_valid(self.retry_after):
            named["Retry-After"] = self.retry_after.strip()
        return {name: value for name, value in named.items() if value is not None}


# RFC 9110's Retry-After: delta-seconds, or an HTTP date as a sender writes it (IMF-fixdate).
_RETRY_AFTER = re.compile(
    r"[0-9]+|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
    re.ASCII,
)


def retry_after_valid(value: str) -> bool:
    """Whether `value` is a Retry-After a client reads: seconds, or an IMF-fixdate that is a
    date (not 31 Feb)."""
    value = value.strip(" \t")
    return _RETRY_AFTER.fullmatch(value) is not None and (
        parse_retry_after(value, datetime.now(timezone.utc)) is not None
    )


# What no header of an answer may hold (RFC 9110 5.5: a control character but the tab; aiohttp
# refuses the whole answer for one), and what is no latin-1 letter (a byte that was not UTF-8,
# which aiohttp's client reads as a surrogate, cannot be written at all).
_UNSENDABLE = re.compile(r"[^\t\x20-\x7e\xa0-\xff]")


def sendable(value: str) -> bool:
    """Whether a header value of CCV's can be passed on as it is."""
    return _UNSENDABLE.search(value) is None


# A JSON string in a JSON text: outside strings, no other token holds a `"`.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def masked_answer(body: bytes, secrets: Iterable[str]) -> tuple[bytes, bool]:
    """Return CCV's answer with every secret it echoed masked (`redact_body`), and whether it
    was written again as UTF-8 JSON: a JSON answer (in UTF-8, -16 or -32) may echo one in an
    escape no list of forms covers (`t_Ab\\u002BCd`, `\\/`, `\\u0074\\u005f...`); each of its
    strings (keys too) holding one, decoded, is masked and written again, the rest as it came."""
    forms = text_forms(secrets)
    if forms is None:
        return body, False
    encoding = json.detect_encoding(body)
    if encoding == "utf-8" and b"\\" not in body:
        return redact_body(body, secrets), False  # the textual forms see every string as is
    try:
        text = body.decode(encoding, "surrogatepass")
        strict_json.loads_answer(body)
    except (ValueError, RecursionError):
        return redact_body(body, secrets), False  # no JSON: masked as a text

    def masked(found: re.Match[str]) -> str:
        if encoding == "utf-8" and "\\" not in found[0]:
            return found[0]  # as it came: the textual masking after sees it
        decoded = json.loads(found[0])
        if not isinstance(decoded, str) or not holds_secret(decoded, forms):
            return found[0]
        shown = mask(decoded, forms)
        return json.dumps(shown if shown != decoded else MASK)

    again = _JSON_STRING.sub(masked, text)
    if again == text:
        return redact_body(body, secrets), False
    return redact_body(again.encode("utf-8", "surrogatepass"), secrets), True


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
        return _own_answer(exc.status, exc.location, own)
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
