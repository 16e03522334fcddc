"""What both provider clients share: a request with retries and backoff, each account's bound on
its requests in flight, a bounded worker pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import NamedTuple, TypeVar

import aiohttp
from aiohttp import hdrs
from aiohttp.http_exceptions import ContentEncodingError
from yarl import URL

from reconciler.config import CCNowConfig, CCVConfig, RetryConfig
from reconciler.sources.codings import BodyTooLarge, BodyUnreadable, answer_decoded
from reconciler.sources.errors import AnswerTooLarge, SourceUnavailable, UndecodableAnswer
from reconciler.sources.rest import AccountRest
from reconciler.sources.retry_after import read_retry_after

T = TypeVar("T")


class RequestFailed(SourceUnavailable):
    """A request still failed after every retry (429, 5xx, timeout or connection error)."""

    def __init__(
        self,
        word: str,
        *,
        sent_at: float,
        reached: bool = True,
        http_status: int | None = None,
        wait: float | None = None,
    ) -> None:
        # str() is "http 503" / "timeout" / "connection"; `word` is the Observation reason.
        super().__init__(word.replace("_", " "))
        self.word = word
        # False: the provider surely did not take the request: no attempt got a connection, or
        # those that did were turned away (429, 503).
        self.reached = reached
        self.sent_at = sent_at  # when the last attempt was sent (wall clock)
        # The last attempt's answer (429, 5xx); None: it got none (a timeout, a connection
        # error, a cut answer).
        self.http_status = http_status
        # What the last answer's Retry-After asked, in seconds (None: none came).
        self.wait = wait

    @property
    def turned_away(self) -> bool:
        """Whether the provider answered and surely ran nothing: the last attempt was answered
        (429, 503), and none before it reached anything."""
        return not self.reached and self.http_status is not None


class Stopping(Exception):
    """The daemon is stopping: this request (a write, or a read a write needs) was kept back
    before it left, and will not be sent now. Not a failure: nothing reached the provider, and
    nothing is to be recorded as failed."""


class Reply(NamedTuple):
    """A provider's final answer to one request (from `request`, never 429/5xx: those raise
    RequestFailed). A named tuple: one is made per request."""

    status: int
    body: bytes
    content_type_header: str  # as received; parsed only when asked
    # When the attempt this answers was sent (wall clock, read just before it): what the answer
    # says is as of then, not of the first attempt's time, which a retry may follow by a
    # Retry-After or a timeout (diff.stale).
    sent_at: float
    # The body's end was told by a Content-Length, which aiohttp raises on a body ending short
    # of: such a body came whole. False: a chunked body (a CGI that died mid-answer still gets
    # its chunked response ended cleanly by the web server), one only the connection's close
    # ended (a lost link looks the same), or framing unknown.
    framed: bool = False
    # Sent in chunks (what a web server does with a CGI's answer): the server says it ended
    # there, but not that the program behind it finished its last line.
    chunked: bool = False
    # An earlier attempt of the same request may have reached the provider (its answer lost, or
    # a status it may have run before): a write's answer then may follow that attempt's effect
    # (`not pending`: the earlier one took).
    reached_before: bool = False
    # A write's answer only: an attempt of the same request was made before it (turned away or
    # not): a ship CCNow applied behind a proxy's 503 is `not pending` to the retry.
    tried_before: bool = False
    # A write's answer only: an attempt before it was answered in a way that, for a write never
    # sent twice, would not say it was not run (a 503 without the provider's words: a proxy's
    # after the provider got it and was slow), though it was tried again as turned away.
    hidden_before: bool = False
    # A write's answer only (writes/once.py): its Location header, made absolute.
    location: str | None = None
    # A write's answer only: its Retry-After header, when it is one (seconds or an HTTP date).
    retry_after: str | None = None
    # A write's 4xx answer whose body broke (writes/once.py) after any byte of it came (as
    # sent: a chunk's size line is one), or at a point not known (another connector than the
    # runtime's): the status says the request was not run, but a body that began may have said
    # otherwise (a CCNow order's line). Only that is kept, not the bytes.
    body_began: bool = False

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters ("" when there is none)."""
        return self.content_type_header.partition(";")[0].strip().lower()


class Gates:
    """Each account's bound on its requests in flight (its `concurrency`), one per process:
    passes, notification checks, probes and writes of an account share it, so that together
    they never have more in flight, however many of them run at once."""

    def __init__(self) -> None:
        self._gates: dict[tuple[str, str], asyncio.Semaphore] = {}

    def of(self, account: CCVConfig | CCNowConfig) -> asyncio.Semaphore:
        """Return the account's gate: `request` and `send_once` hold it for each attempt."""
        key = ("ccv" if isinstance(account, CCVConfig) else "ccnow", account.name)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Semaphore(account.concurrency)
        return gate


def is_retryable(status: int) -> bool:
    """Return whether an HTTP status is worth asking again: rate limited or a server error."""
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the seconds a Retry-After header asks us to wait (delta seconds or HTTP date),
    read leniently (`retry_after.read_retry_after`); a date gone by is now."""
    found = read_retry_after(value, now, strict=False)
    if found is None or isinstance(found, str):
        return None if found is None else float(found)
    return max(0.0, (found - now).total_seconds())


def retry_delay(
    retry: RetryConfig,
    n: int,
    retry_after: float | None,
    *,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float:
    """Return the wait before retry `n` (0-based): the server's wish, else jittered doubling."""
    if retry_after is not None:
        return min(retry_after, retry.max_backoff_s)
    return min(retry.backoff_s * 2.0**n * jitter(0.8, 1.2), retry.max_backoff_s)


def is_chunked(resp: aiohttp.ClientResponse) -> bool:
    """Whether a response's body came in chunks."""
    return "chunked" in resp.headers.get(hdrs.TRANSFER_ENCODING, "").lower()


def reply_of(resp: aiohttp.ClientResponse, body: bytes, sent_at: float) -> Reply:
    """Return a response's Reply, with how its body was framed."""
    content_type = resp.headers.get(hdrs.CONTENT_TYPE, "")
    chunked = is_chunked(resp)
    # Framed: as long as its Content-Length says (chunking, which overrides a Content-Length,
    # says nothing of whether what was sent was whole).
    framed = not chunked and resp.content_length is not None
    return Reply(resp.status, body, content_type, sent_at, framed, chunked)


async def read_body(
    resp: aiohttp.ClientResponse, limit: int, came: list[bytes] | None = None
) -> bytes:
    """Read a response body of at most `limit` bytes; a larger one is not the protocol
    (AnswerTooLarge, a ProtocolError: the request reached the provider). `came`: each part
    of the body (as sent) is added to it as it comes, so that a caller keeps what came before
    the body broke (a write's answer cut short may hold whole lines that say what was done).

    The limit holds for the body as decoded: a compressed answer's Content-Length says nothing
    of its size once inflated (a few kB of gzip can hold gigabytes). The session leaves every
    coding as it came (http_session): aiohttp would decode by the last Content-Encoding header
    alone, past any limit, and take a gzip body cut short as whole; the codings of all its
    headers are undone here, each stream to its end, within the limit.
    """
    length = resp.content_length
    if length is not None and length > limit:
        raise AnswerTooLarge(resp.status, limit)
    # Read part by part whatever its framing: aiohttp keeps no part of a body that broke.
    chunks: list[bytes] = [] if came is None else came
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(resp.status, limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if hdrs.CONTENT_ENCODING not in resp.headers:
        return body  # nearly every answer: nothing more to look at
    try:
        return answer_decoded(body, resp.headers.getall(hdrs.CONTENT_ENCODING), limit)
    except BodyTooLarge:
        raise AnswerTooLarge(resp.status, limit) from None
    except BodyUnreadable as exc:
        # Raised as aiohttp raises its own, so that every caller takes it as those (undecodable).
        raise aiohttp.ClientPayloadError("undecodable") from ContentEncodingError(str(exc))


def undecodable(exc: BaseException, status: int | None) -> UndecodableAnswer | None:
    """Return the UndecodableAnswer an aiohttp error is (`status`: the answer's, when known),
    or None when it is another failure (a connection cut mid-answer among them)."""
    seen: BaseException | None = exc
    for _ in range(4):  # aiohttp wraps it once or twice
        if seen is None:
            return None
        if isinstance(seen, ContentEncodingError):
            # "Can not decode content-encoding: brotli (br). Please install `Brotli`"
            named = str(seen.message).partition("content-encoding:")[2].partition(". ")[0]
            return UndecodableAnswer(named.strip() or "unknown", status)
        seen = seen.__cause__ or seen.__context__
    return None


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    gate: asyncio.Semaphore,
    retry: RetryConfig,
    max_body: int,
    log: logging.Logger,
    data: bytes | None = None,
    complete: Callable[[Reply], bool] | None = None,
    halt: asyncio.Event | None = None,
    long_wait_ends: bool = False,
    rest: AccountRest | None = None,
) -> Reply:
    """Send one request, retrying 429/5xx/timeouts/connection errors; raise RequestFailed after.

    `complete` tells whether a reply arrived whole (None: every reply does); one that did not is
    retried like a dropped connection (word `truncated_answer`). A 429 or 503 says the provider
    surely did not run the request, so that `reached` and the reply's `reached_before` say
    whether any attempt may have. Once `halt` is set (the daemon stops), no attempt is made
    again: the failure so far is raised at once, during the backoff too, and Stopping when no
    attempt was made yet. Each attempt holds `gate`, the account's bound (Gates). An answer in a
    Content-Encoding aiohttp cannot decode is UndecodableAnswer, not retried: the provider (or a
    proxy) answered. `long_wait_ends`: a Retry-After asking longer than a retry may wait
    (`retry.max_backoff_s`) ends it at once (a write's read: the write waits in its queue as
    long as asked, RequestFailed.wait, instead of asking again sooner). `rest`: the account's
    (a read's): a 429 or 503 asking longer rests the account and raises RestAsked, as does
    every attempt while it rests (none is sent).
    """
    n = 0
    reached = False
    word, sent_at = "", 0.0
    answered: int | None = None  # the HTTP status `word` names, if it names one
    while True:
        retry_after: str | None = None
        # The account's turn comes before the attempt is dated and its timeout starts: waiting
        # for it is not the provider being slow. It is given back before any backoff.
        await gate.acquire()
        if halt is not None and halt.is_set():
            gate.release()  # the stop began while this waited for its turn
            if n == 0:
                raise Stopping  # nothing was sent: not a failure the caller reports
            raise RequestFailed(word, reached=reached, sent_at=sent_at, http_status=answered)
        if rest is not None and (resting := rest.failure()) is not None:
            gate.release()
            raise resting
        sent_at = time.time()
        reached_before = reached
        status: int | None = None
        try:
            # No redirects: a redirect would carry the credential to wherever it points, and a
            # provider that redirects an API call is answering something else than the protocol.
            async with session.request(
                method,
                url,
                headers=headers,
                data=data,
                timeout=timeout,
                allow_redirects=False,
                raise_for_status=False,
            ) as resp:
                status = resp.status
                if not is_retryable(status):
                    reached = True
                    reply = reply_of(resp, await read_body(resp, max_body), sent_at)
                    if complete is None or complete(reply):
                        # _replace only when needed: it runs on every poll's answer otherwise.
                        return reply._replace(reached_before=True) if reached_before else reply
                    word, answered = "truncated_answer", None
                else:
                    # A 429 or 503 turns the request away before it runs: it reached nothing.
                    reached = reached or status not in (429, 503)
                    retry_after = resp.headers.get("Retry-After")
                    word, answered = f"http_{status}", status
        except asyncio.TimeoutError:
            reached, word, answered = True, "timeout", None
        except aiohttp.ClientConnectorError:
            word, answered = "connection", None  # no connection made: nothing was sent
        except aiohttp.ClientError as exc:
            if (unread := undecodable(exc, status)) is not None:
                raise unread from None
            # aiohttp's text may quote the URL; ours never says more than the word.
            reached, word, answered = True, "connection", None
        finally:
            gate.release()
        wait = parse_retry_after(retry_after, datetime.now(timezone.utc))
        asked = None if rest is None else rest.asked(wait, answered, cap_s=retry.max_backoff_s)
        if asked is not None:
            raise asked
        if (
            n >= retry.attempts
            or (long_wait_ends and wait is not None and wait > retry.max_backoff_s)
            or not await waited_to_retry(retry, n, wait, halt, log, url, word)
        ):
            raise RequestFailed(
                word, reached=reached, sent_at=sent_at, http_status=answered, wait=wait
            )
        n += 1


async def waited_to_retry(
    retry: RetryConfig,
    n: int,
    wait: float | None,
    halt: asyncio.Event | None,
    log: logging.Logger,
    url: URL,
    word: str,
) -> bool:
    """Wait before retry `n` (`retry_delay`: `wait`, a Retry-After's seconds, first), logged
    as `request.retry` (`word`: why); False, at once, when `halt` (the stop) is set before
    or while it waits: no attempt is to be made again. The one wait between attempts of
    `request` and of a CCNow post sent again (writes/ccnow_send.post_retrying), whose loops
    differ in what an attempt is and how its answer is read."""
    if halt is not None and halt.is_set():
        return False
    delay = retry_delay(retry, n, wait)
    log.debug(
        "request.retry",
        extra={"fields": {"url": str(url), "reason": word, "attempt": n + 1, "delay_s": delay}},
    )
    if halt is None:
        await asyncio.sleep(delay)
        return True
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(halt.wait(), delay)
    return not halt.is_set()


async def drain(
    items: Iterable[T],
    handle: Callable[[T], Awaitable[bool]],
    concurrency: int,
) -> None:
    """Run `handle` over `items` lazily, at most `concurrency` at once; raise its first error."""
    iterator = iter(items)
    # Slow start: one by one until `handle` returns True (it reached the provider and was not
    # refused), so that bad credentials cost one request, not `concurrency` of them.
    for item in iterator:
        if await handle(item):
            break
    else:
        return

    async def worker() -> None:
        # Every worker pulls from the same iterator: memory stays bounded by `concurrency`,
        # whatever the number of items.
        for item in iterator:
            await handle(item)

    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, concurrency))]
    try:
        # The first failure (401, open breaker, an error of `emit`) stops every other worker.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task in done and not task.cancelled() and task.exception() is not None:
                task.result()
    finally:
        for task in tasks:
            task.cancel()
        # Wait for the cancelled workers so that none outlives the pass, and collect their
        # exceptions so that none is reported as "never retrieved".
        await asyncio.gather(*tasks, return_exceptions=True)
