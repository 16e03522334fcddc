"""A provider write call sent once, never retried: neither provider documents its write calls as
idempotent, so a request whose answer was lost must not go out again. The caller learns whether
the provider answered, surely got nothing, or may have got it (or that the stop kept it back).
The CCNow actions that may go out again (ship, cancel, track) are each attempt of theirs sent so
(ccnow_send.py), read as every write's answer is."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from aiohttp import hdrs
from yarl import URL

from reconciler.sources.connection import (
    CONNECTING,
    LINE_MAX,
    Connecting,
    WriteAwareConnector,
    answer_head,
    body_began,
)
from reconciler.sources.errors import AnswerTooLarge, UndecodableAnswer
from reconciler.sources.http import (
    Reply,
    Stopping,
    read_body,
    reply_of,
    undecodable,
)
from reconciler.sources.retry_after import passed_retry_after
from reconciler.writes.in_flight import Halt

__all__ = (
    "AnswerTooLarge",
    "BodyBroke",
    "HeadUnread",
    "NotSent",
    "Uncertain",
    "UndecodableAnswer",
    "WriteAwareConnector",
    "send_once",
)


class NotSent(Exception):
    """The request surely did not reach the provider: its connection (TCP, TLS) was refused,
    failed or not made within the timeout. `str()` is a short word: `connection` or
    `connect timeout`."""


class Uncertain(Exception):
    """The request may have reached the provider, but its answer was lost (timeout, dropped
    connection). `str()` is a short word: `timeout` or `connection`."""


class BodyBroke(Uncertain):
    """The answer's status line and headers came, its body did not (cut short, or not within
    the timeout) or aiohttp refused the rest of it (a broken chunk, a header line too long):
    the provider answered, with `status`, and `location` (absolute) where it pointed. `str()`
    is a word as Uncertain's, `timeout` or `connection`, or MALFORMED. A write it answered may
    have been run; a `303 See Other` or a `201 Created` says it was. `came`: the answer as far
    as it came (its body's bytes before the break; none when a Content-Encoding makes them
    unreadable), neither `framed` nor `chunked` (its end is not its own), or None when not
    known: its whole lines may say what the provider did (CCNow's orders' lines)."""

    def __init__(
        self, word: str, status: int, location: str | None, came: Reply | None = None
    ) -> None:
        super().__init__(word)
        self.status = status
        self.location = location
        self.came = came


class HeadUnread(Uncertain):
    """An HTTP answer began (`HTTP/` came) but its status line and headers did not come whole
    or aiohttp refuses them (or aiohttp refused bytes its connector kept nothing of): the
    provider got the request, and what it said of it (a `201 Created`, a `303 See Other` and
    where it points) is unknown. Bytes that are no HTTP (a TLS alert) are Uncertain: nothing
    says the provider got it. `str()` is a word as BodyBroke's."""


# BodyBroke's and HeadUnread's word where aiohttp refused what came as no HTTP it reads.
MALFORMED = "malformed"


async def send_once(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    headers: dict[str, str],
    data: bytes,
    timeout: aiohttp.ClientTimeout,
    gate: asyncio.Semaphore,
    max_body: int,
    halt: asyncio.Event | None = None,
) -> Reply:
    """Send one request; return the answer, whatever its status. Raise NotSent, Uncertain
    (BodyBroke when only the answer's body was lost, HeadUnread when its status line and headers
    could not be read), AnswerTooLarge or UndecodableAnswer (the last four: it got the
    request); never retry, never
    follow a redirect (it would carry the credential). It holds `gate`, the account's bound
    (sources/http.py Gates), taken before its timeout starts; once `halt` is set (the daemon
    stops) while it waits for that, it is not sent (Stopping: not a failure to reach the
    provider), at once: the turn may come only after the stop's bound, which cuts off what is
    still out (a submit surely never sent would be left `sending`, uncertain at the next
    start)."""
    await _take_turn(gate, halt)
    if isinstance(halt, Halt):
        halt.took_turn()  # out from now: the stop waits for it
    try:
        return await _send(session, method, url, headers, data, timeout, max_body)
    finally:
        gate.release()


async def _take_turn(gate: asyncio.Semaphore, halt: asyncio.Event | None) -> None:
    """Take a turn of `gate`; raise Stopping, holding none, once `halt` is set before it came
    (or as it came: not sent either way)."""
    if halt is not None and halt.is_set():
        raise Stopping
    if halt is None or not gate.locked():
        await gate.acquire()  # a turn free is taken at once
        return
    turn = asyncio.ensure_future(gate.acquire())
    halted = asyncio.ensure_future(halt.wait())
    try:
        await asyncio.wait({turn, halted}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled while it waited
        _give_back(gate, turn)
        raise
    finally:
        halted.cancel()
    if not halt.is_set():
        turn.result()  # done: the turn is taken
        return
    _give_back(gate, turn)
    raise Stopping


def _give_back(gate: asyncio.Semaphore, turn: asyncio.Future[Any]) -> None:
    """Give up a wait for a turn: cancelled before it came, or given back once it came (it may
    have come in the same step), so that the account keeps every turn of its bound."""

    def given(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            gate.release()

    turn.cancel()
    turn.add_done_callback(given)


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: dict[str, str],
    data: bytes,
    timeout: aiohttp.ClientTimeout,
    max_body: int,
) -> Reply:
    sent_at = time.time()
    # Known only with the WriteAwareConnector (the runtime's session); with another connector
    # `now` stays False, and a timeout is taken as uncertain, as it always may be.
    connecting = Connecting()
    token = CONNECTING.set(connecting)
    try:
        async with session.request(
            method,
            url,
            data=data,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            max_line_size=LINE_MAX,
            max_field_size=LINE_MAX,
        ) as resp:
            # Read before the body, whose failure must not lose it (a 303's Location says CCV
            # made the order).
            joined = _location(url, resp.headers.getall(hdrs.LOCATION, ()))
            began = False
            came: list[bytes] = []  # what came before a break: whole lines may say what ran
            try:
                # AnswerTooLarge: it got the request.
                body = await read_body(resp, max_body, came)
            except AnswerTooLarge as exc:
                exc.location = joined
                raise
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                if not 400 <= resp.status < 500:
                    if (unread := undecodable(exc, resp.status)) is not None:
                        unread.location = joined
                        raise unread from None
                    # Its status and Location came: lost with the body, a 303's "made, see
                    # there" would read as a lost answer, and a person's word that the provider
                    # never got it would be taken (`store/not_sent.refusal`).
                    word = "timeout" if isinstance(exc, asyncio.TimeoutError) else "connection"
                    cut = _cut(resp, came, sent_at)._replace(location=joined)
                    raise BodyBroke(word, resp.status, joined, cut) from None
                # A refusal whose body never came whole: its status line says it all (nothing
                # was made), and it is no lost answer; whether its body began is kept
                # (`Reply.body_began`), not what came of it.
                body = b""
                heard = connecting.heard
                began = heard is None or body_began(bytes(heard))
            reply = reply_of(resp, body, sent_at)._replace(body_began=began)
            # Passed on with the answer (a 429's when to try again), when it is a Retry-After.
            wait = passed_retry_after(
                resp.headers.get(hdrs.RETRY_AFTER), datetime.now(timezone.utc)
            )
            reply = reply._replace(retry_after=wait)
            return reply if joined is None else reply._replace(location=joined)
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
        # ConnectionTimeoutError: a `connect`/`sock_connect` timeout, should one be set.
        raise NotSent("connection") from None
    except asyncio.TimeoutError:
        # The whole timeout ran out: while connecting (TCP or a TLS handshake never ended)
        # nothing left; after that the request may have.
        if connecting.now:
            raise NotSent("connect timeout") from None
        return _heard(url, connecting, "timeout", None, sent_at)
    except aiohttp.ClientError as exc:
        # An answer whose headers name an encoding aiohttp cannot decode (`br`): it got the
        # request, and answered.
        unread = undecodable(exc, None)
        if unread is None and connecting.now:
            raise NotSent("connection") from None
        word = MALFORMED if isinstance(exc, aiohttp.ClientResponseError) else "connection"
        return _heard(url, connecting, word, unread, sent_at)
    finally:
        CONNECTING.reset(token)
        # What the answer brought (up to 256 KiB) is read by now, or never to be: not kept
        # while its connection (closed after the answer, its own) waits to be collected.
        if connecting.heard is not None:
            connecting.heard.clear()


def _cut(resp: aiohttp.ClientResponse, came: list[bytes], sent_at: float) -> Reply:
    """An answer whose body broke, as far as it came (BodyBroke.came); its Retry-After kept."""
    # Encoded, its bytes cut short cannot be read (a gzip stream stops anywhere).
    body = b"" if hdrs.CONTENT_ENCODING in resp.headers else b"".join(came)
    wait = passed_retry_after(resp.headers.get(hdrs.RETRY_AFTER), datetime.now(timezone.utc))
    reply = reply_of(resp, body, sent_at)
    return reply._replace(framed=False, chunked=False, retry_after=wait)


def _heard(
    url: URL, connecting: Connecting, word: str, unread: UndecodableAnswer | None, sent_at: float
) -> Reply:
    """The answer aiohttp failed on before it made a response of it: aiohttp's parser reads
    the status line, headers and the body's first bytes of one read together, and a failure
    in any of them (a broken chunk, a header line too long, a `br` body) loses the status and
    `Location` that came. Read again from what the connection brought (`answer_head`), they
    are kept as when the body broke later (BodyBroke; a 4xx, whose status says it all, is
    returned with no body, and whether its body began); a write whose answer began is never
    taken for a lost one."""
    heard = connecting.heard
    # Blank lines only are no answer begun, as no byte is (`b"HTTP/".startswith(b"")` would
    # take them for a head cut short: refused for ever, with no order at CCV to track).
    began = b"" if heard is None else bytes(heard.lstrip(b"\r\n")[:5])
    if heard is None or not began:  # no byte came (None: not known, with another connector)
        if unread is not None:
            raise unread
        if heard is None and word == MALFORMED:
            # aiohttp refused bytes that came: an answer began, unkept.
            raise HeadUnread(word)
        raise Uncertain(word)
    if not b"HTTP/".startswith(began):
        # No HTTP answer began (a TLS alert from an https port set as http://, a proxy's
        # junk): nothing says CCV got the request, and a person who looked may say it did not.
        if unread is not None:
            raise unread
        raise Uncertain(word)
    head = answer_head(bytes(heard))
    if head is None:
        raise HeadUnread(word)
    joined = _location(url, head.locations)
    if 400 <= head.status < 500:
        more = len(heard) > head.end  # its body began: it may have said otherwise
        reply = Reply(
            head.status, b"", head.content_type, sent_at, location=joined, body_began=more
        )
        wait = passed_retry_after(head.retry_after, datetime.now(timezone.utc))
        return reply._replace(retry_after=wait)
    if unread is not None:
        unread.status, unread.location = head.status, joined
        raise unread
    raise BodyBroke(word, head.status, joined)


def _location(url: URL, lines: Iterable[str]) -> str | None:
    """Where the answer points, made absolute (`_joined`): relative to the provider's URL, not
    to whoever the answer is passed on to. Its first `Location` line that points somewhere: an
    empty one points nowhere, and one pointing back at the URL asked would read as where the
    order is; a second line after such a one (`Location:` then `Location: /order/ord-3`) is
    where the order is, lost with `headers.get`, which reads the first line only (a 303 kept
    with none: `--not-sent` taken, and the reference submitted again, a second order). Of two
    pointing elsewhere the first is kept: either says CCV made the order."""
    for line in lines:
        if (line := line.strip()) and (joined := _joined(url, line)) is not None:
            return joined
    return None


def _joined(url: URL, location: str) -> str | None:
    """A Location made absolute against the URL asked, without a user or password in it (they
    would be kept in events and logs); as it came, less any user and password, when it is no
    URL. None when it points back at the URL asked itself (`?`, `#x`): taken for where the
    order is, it would prove an order made (`store/not_sent.refusal`). Another query on that
    path (`?orderId=...`) points at an order."""
    # A tab or line end is no part of the URL (the URL standard drops each, as a client does):
    # kept, it would name another order than the one the client follows.
    location = location.translate(_DROPPED)
    # A byte that is no UTF-8 (aiohttp reads it as a surrogate) cannot be stored, and yarl drops
    # it; another control character no header can carry: each kept as its percent escape.
    location = _UNSAFE.sub(lambda c: "%%%02X" % (ord(c[0]) & 0xFF), location)
    try:
        joined = url.join(URL(location)).with_user(None)
    except (ValueError, IndexError):  # IndexError: yarl on `http://[::1]@/x`
        # As yarl writes a URL's: a letter beyond ASCII as its UTF-8 bytes' escapes.
        location = re.sub("[^\x00-\x7f]+", lambda c: quote(c[0]), location)
        return _USERINFO.sub(r"\1//", location)
    if joined.with_fragment(None) == url.with_fragment(None):
        return None
    return str(joined)


# `scheme://user:password@` of a Location yarl cannot read (a port out of range, say).
_USERINFO = re.compile(r"^([A-Za-z][\w+.-]*:)?//[^/?#]*@")

# What the URL standard removes from a URL before it reads it: ASCII tabs and newlines.
_DROPPED: Final[Mapping[int, int | None]] = str.maketrans("", "", "\t\n\r")

# What a Location kept as text must not hold: control characters, and the surrogates that stand
# for bytes that are no UTF-8 (U+DC80 to U+DCFF: byte 0x80 to 0xFF).
_UNSAFE = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")
