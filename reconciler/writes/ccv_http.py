"""One CCV write call, sent once: never retried, since CCV's write calls are not known to be
idempotent. The caller learns whether CCV answered, surely got nothing, or may have got it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from typing import NamedTuple

import aiohttp
from aiohttp import hdrs
from yarl import URL

from reconciler.config import CCVConfig
from reconciler.redact import mask, text_forms
from reconciler.sources.ccv import auth_headers
from reconciler.store.not_sent import ANSWER_HEAD_UNREAD, UNDECODABLE_ANSWER
from reconciler.writes import once
from reconciler.writes.answer_masking import HELD_SECRET, masked_answer
from reconciler.writes.once import NotSent, Uncertain

__all__ = (
    "HELD_SECRET",
    "MAX_ANSWER_BYTES",
    "Answer",
    "NotSent",
    "Uncertain",
    "html_page",
    "key_refused",
    "masked_answer",
    "send_once",
    "sendable",
)

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
        or an HTTP date as IMF-fixdate: `sources.retry_after.passed_retry_after`)."""
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


# What a 2xx to prices is when it is evidently not CCV's answer: a page for a browser.
_PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def html_page(answer: Answer, secrets: Iterable[str]) -> str | None:
    """The media type of a 2xx that is evidently not CCV's answer but a page of something
    between reconciler and CCV (a gateway's, a login wall served with 200): HTML by its
    Content-Type, or a body whose first character but blanks is `<`. Shown lower-cased, cut to
    MAX_MEDIA_TYPE_CHARS after every secret in it is masked (`none` when it named none). None
    for any other 2xx, an empty body or a short text as much as JSON: the document says only
    "200 Shopping cart pricing details set" (its example body is JSON)."""
    if not 200 <= answer.status < 300 or answer.own is not None:
        return None
    kind = answer.content_type.split(";", 1)[0].strip().lower()
    start = answer.body[:64]
    text = start.decode(json.detect_encoding(start), "replace").lstrip("\ufeff \t\r\n\f\v")
    if not text and not answer.body[64:].strip():
        return None  # empty, whatever its label: many a server calls any answer text/html
    if kind not in _PAGE_TYPES and not text.startswith("<"):
        return None
    # Masked whole first: a secret a cut (or a `;`) splits leaves none of its letters.
    shown = mask(answer.content_type, text_forms(secrets)).split(";", 1)[0].strip().lower()
    return shown[:MAX_MEDIA_TYPE_CHARS] or "none"


# Enough for any registered media type; what a gateway writes there is not passed on whole.
MAX_MEDIA_TYPE_CHARS = 80


# CCV's statuses refusing the account's API key (as `ccv submit` reads them: exit 78).
KEY_REFUSED = frozenset({401, 403})


def key_refused(answer: Answer, account: str) -> str | None:
    """What the API says of CCV refusing the account's API key (401, 403) to prices it
    forwarded: reconciler's key was refused, not the caller's token, and the caller can fix
    nothing; None for any other answer. CCV's body and challenge are not passed on: they may
    quote the key, and a 401 with a challenge reads as the API's own refusal (DESIGN.md)."""
    if answer.status not in KEY_REFUSED:
        return None
    return (
        f'CCV refused the API key of CCV account "{account}" (CCV answered HTTP {answer.status}): '
        "the prices were not set; the account's api_key in reconciler's config needs fixing "
        "(this request's token was accepted)"
    )
