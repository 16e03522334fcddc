"""Sending one post of CCNow actions: once (an `adjust`: never sent twice), or again after a
failure that is no answer (a ship, cancel or tracking upload), every attempt read as a write's
answer is (`once.send_once`: whether it left, whether an answer began, what came of a refusal
whose body broke), so that both ways tell alike whether a post may have reached CCNow."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone

import aiohttp
from yarl import URL

from reconciler.config import RetryConfig
from reconciler.redact import mask, text_forms
from reconciler.sources.ccnow import MAX_BODY_BYTES
from reconciler.sources.ccnow_answer import Answer, field_names, says_down, speaks_ccnow
from reconciler.sources.ccnow_cut import is_complete
from reconciler.sources.ccnow_refusal import answered_orders, refusal_lines
from reconciler.sources.http import (
    Reply,
    RequestFailed,
    Stopping,
    is_retryable,
    parse_retry_after,
    waited_to_retry,
)
from reconciler.writes.answer_masking import answer_snippet
from reconciler.writes.once import BodyBroke, NotSent, Uncertain, send_once

__all__ = (
    "FIELD",
    "NOT_RUN",
    "UNREADABLE_ANSWER",
    "GaveUp",
    "Lost",
    "not_ccnows",
    "post_once",
    "post_retrying",
    "refuses_a_field",
    "turned_away",
)

# The actions' logger: a post's retries are logged under the name operators filter on.
log = logging.getLogger("reconciler.writes.ccnow_actions")

# Statuses that say the post was not run, unless the answer carries an order's line: a
# redirect that moves the url (301, 307, 308; never followed), a login wall (a proxy's too), a
# wrong url or method, a request the server did not read whole or would not take (408, 413,
# 414, 431), a rate limit. CCNow documents no status (its answers, errors too, are lines of a
# 200): these come from what stands before its program, which they stop, and a body that never
# came says nothing more. A 503 says so only without CCNow's words in it (not for an adjust:
# `turned_away`), or with CCNow's error lines alone, each saying it is down. Any other status
# than 200 may come after CCNow ran it (a 302 or 303, "done, see there"; a 500, a gateway's 502
# or 504, Cloudflare's 520 or 524, a 201): the actions in it may have been applied.
NOT_RUN = frozenset({301, 307, 308, 401, 403, 404, 405, 407, 408, 413, 414, 429, 431})

# The fields of the document's table that carry a command's own values, as CCNow writes them
# in an `error_message`, in any case: with their `x_` (`x_amount`: the commands that carry
# one), numbered (`x_amount_1`, `amount_1`: the command at that place in the post), or both. A
# bare word (`Database error, action not performed`) is English, not a field. The account's
# fields (`x_clientid`, `x_password`) are not here.
FIELD = field_names("orderid|action|notes|amount|trackname|tracknumber")


class Lost(Exception):
    """The post may have reached CCNow but its answer was lost (timeout, dropped connection,
    an answer cut off, or what came back may follow CCNow running it: a status other than 200
    that does not say it was not run, an HTML page, an unreadable body, an error line beside
    the orders' lines; or an attempt before it may have reached CCNow and this one's answer
    settles nothing). `str()` is a short word; `wait`: what the last answer's Retry-After
    asked, in seconds (None: none came), so that a post sent again waits for it."""

    def __init__(
        self,
        word: str,
        wait: float | None = None,
        *,
        cut: Reply | None = None,
        in_part: tuple[Answer, float, bool, bool, bool] | None = None,
        seen: dict[str, object] | None = None,
    ) -> None:
        super().__init__(word)
        self.wait = wait
        # An answer cut short after whole lines for some of the post's orders (not retried:
        # those orders' commands would be applied again), read by the caller.
        self.cut = cut
        # Those lines, read (ccnow_post): the answer, when its attempt was sent, whether an
        # earlier attempt may have reached CCNow, whether one was made (Posted.tried_before),
        # whether one's answer may hide that CCNow ran it (Posted.hidden_before).
        # They close their orders' commands.
        self.in_part = in_part
        # What came, when it was no CCNow answer (`unreadable`; a status other than 200 with
        # no line of CCNow's, `not_ccnows`), for its log line alone.
        self.seen = seen


# The word of an answer that is no CCNow answer (an HTML page, an empty or unreadable body).
UNREADABLE_ANSWER = "unreadable_answer"
# How much of such an answer its log line shows: enough to tell a gateway's page from a login
# wall, too little to carry what a log must not (masked all the same).
SNIPPET_CHARS = 80
MEDIA_TYPE_CHARS = 80


def unreadable(reply: Reply, secrets: Sequence[str]) -> Lost:
    """A post's answer that is no CCNow answer: whether the post ran is unknown (`seen_of`)."""
    return Lost(UNREADABLE_ANSWER, seen=seen_of(reply, secrets))


def seen_of(reply: Reply, secrets: Sequence[str]) -> dict[str, object]:
    """What came, for its log line: its HTTP status, media type, and its body's start
    (`answer_snippet`: blanks run together, the account's secrets, the password among them,
    masked in every view a reader may take of it, before it is cut)."""
    kind = mask(reply.content_type, text_forms(secrets))[:MEDIA_TYPE_CHARS] or None
    snippet = answer_snippet(reply.body, secrets, SNIPPET_CHARS)
    return {"http_status": reply.status, "content_type": kind, "snippet": snippet}


def not_ccnows(reply: Reply | None, secrets: Sequence[str]) -> dict[str, object] | None:
    """What came (`seen_of`) when an answer with a status other than 200 is evidently not
    CCNow's: no line of its protocol in it (a gateway's 502 page, an empty body); None when
    CCNow's words are in it, or no answer came."""
    if reply is None or speaks_ccnow(reply.body):
        return None
    return seen_of(reply, secrets)


class GaveUp(RequestFailed):
    """A post still failed after every retry; `wait`: what its last answer's Retry-After
    asked, in seconds (None: it had none, or no answer came)."""

    def __init__(
        self,
        word: str,
        *,
        sent_at: float,
        reached: bool,
        http_status: int | None,
        wait: float | None,
        hidden: bool = False,
        last: Reply | None = None,
        turned: int | None = None,
    ) -> None:
        super().__init__(word, sent_at=sent_at, reached=reached, http_status=http_status, wait=wait)
        # An attempt's answer may hide that CCNow ran it (Reply.hidden_before, the last one's
        # included): a tracking upload queued so may be in CCNow already.
        self.hidden = hidden
        self.last = last  # the last attempt's answer, when one came (its log line: `seen_of`)
        # The status of the last attempt answered that it was not run (a 429), also when an
        # attempt after it never connected: the post was sent, and turned away.
        self.turned = turned


def refuses_a_field(status: int, body: bytes) -> bool:
    """Whether a 429 is CCNow's refusal of what the post says: its body CCNow's error lines
    alone, one naming a command's field without saying CCNow is down (`x_tracknumber_1 is not
    a tracking number`). Read as those lines in a 200 (ccnow_post): after any wait the same
    post would be refused the same way. Any other 429 is a rate limit's, or CCNow's word that
    it cannot take posts now: turned away, retried after its Retry-After."""
    if status != 429:
        return False
    lines = refusal_lines(body)
    return lines is not None and any(FIELD.search(x) and not says_down(x) for x in lines)


def turned_away(status: int, body: bytes, *, once: bool = False) -> bool:
    """Whether an answer other than a 200 says the post was not run (NOT_RUN). `once`: the
    post is never sent twice (an `adjust`), and a 503 says so only in CCNow's own words."""
    if answered_orders(body):
        return False  # CCNow's line for an order: it ran, whatever the status
    if status in NOT_RUN:
        # Unless CCNow's own words say more than that it refused the whole post (a `message`
        # saying what it did): its program ran it, whatever stood before it (a 413 so is no
        # size bound's: halved and posted again, each discount could be given twice). A
        # 413's or 414's error lines alone are read as a 200's are (ccnow_post.post_batch).
        return not speaks_ccnow(body) or refusal_lines(body) is not None
    if status == 503:
        # CCNow's own "down" in its error lines alone; not a `message` that says what it did
        # beside them.
        lines = refusal_lines(body)
        down = lines is not None and all(says_down(line) for line in lines)
        # A 503 without CCNow's words may be a balancer's "down" before it, or a proxy's
        # after CCNow got the post and was slow (Varnish's `Backend fetch failed`), with or
        # without a Retry-After: one more post of a discount may give it twice, so an adjust
        # is uncertain for a person; a ship, tracking or cancel sent twice costs nothing.
        return down if once else not speaks_ccnow(body) or down
    return False


def whole_lines(body: bytes) -> bytes:
    """An answer's lines that a line end closes (what came before a cut)."""
    return body[: max(body.rfind(b"\n"), body.rfind(b"\r")) + 1]


def in_part(reply: Reply) -> bool:
    """Whether an answer cut short brought whole lines for some of the post's orders: they say
    what CCNow did with those (a line cut mid-word is no whole line)."""
    return reply.status == 200 and answered_orders(whole_lines(reply.body))


def _came_in_part(exc: Uncertain) -> Reply | None:
    """An answer whose body broke (BodyBroke) as far as it came, when that holds whole lines
    for some of the post's orders; None else."""
    came = exc.came if isinstance(exc, BodyBroke) else None
    return came if came is not None and in_part(came) else None


def not_run(reply: Reply) -> bool:
    """Whether an answer says its attempt was not run: a status that says so (`turned_away`)
    whose body, when it broke, had not begun (the rest may have been the orders' lines)."""
    return not reply.body_began and turned_away(reply.status, reply.body)


async def _send(
    session: aiohttp.ClientSession,
    url: URL,
    headers: dict[str, str],
    data: bytes,
    timeout: aiohttp.ClientTimeout,
    gate: asyncio.Semaphore,
    halt: asyncio.Event | None,
) -> Reply:
    """One attempt of a post, read as a write's answer is (`send_once`)."""
    return await send_once(
        session,
        "POST",
        url,
        headers=headers,
        data=data,
        timeout=timeout,
        gate=gate,
        max_body=MAX_BODY_BYTES,
        halt=halt,
    )


async def post_once(
    session: aiohttp.ClientSession,
    url: URL,
    headers: dict[str, str],
    data: bytes,
    timeout: aiohttp.ClientTimeout,
    gate: asyncio.Semaphore,
    halt: asyncio.Event | None,
) -> Reply:
    """Post once, never again: raise NotSent when no connection was made (Stopping: not
    posted for the stop, the stop began while it waited for its turn), Lost when the answer may
    have been lost after CCNow got the post (`cut`: as far as it came, when that holds whole
    lines for some of its orders), AnswerTooLarge when it was too large to read,
    UndecodableAnswer when its encoding cannot be decoded."""
    try:
        reply = await _send(session, url, headers, data, timeout, gate, halt)
    except Uncertain as exc:
        # Lines for some orders that came whole before the body broke say what CCNow did with
        # those: the caller closes their commands by them (Lost.cut).
        raise Lost(str(exc), cut=_came_in_part(exc)) from None
    if not is_complete(reply):
        raise Lost("truncated_answer", cut=reply if in_part(reply) else None)
    return reply


async def post_retrying(
    session: aiohttp.ClientSession,
    url: URL,
    headers: dict[str, str],
    data: bytes,
    timeout: aiohttp.ClientTimeout,
    gate: asyncio.Semaphore,
    halt: asyncio.Event | None,
    retry: RetryConfig,
    withdrawn: Callable[[], Awaitable[bool]] | None = None,
) -> Reply:
    """Post, and again after a lost answer, a 429 or 5xx, or an answer cut off (a refusal's
    too, once its body began), up to `retry.attempts` more times with backoff (a Retry-After's
    wait first; none when it asks longer than `retry.max_backoff_s`: GaveUp at once, to be
    queued as long as it asks, whether an attempt may have reached CCNow or not); return the
    first other answer, its `reached_before` saying whether an attempt before it may have
    reached CCNow, its `tried_before` whether one was made. Raise GaveUp after the last
    (`reached`: an attempt may have reached CCNow; else nothing ran, the last attempt turned
    away or never sent; `hidden`: an answer may hide that it ran all the same; `wait`: its
    Retry-After), AnswerTooLarge or UndecodableAnswer at once (CCNow got the post), Stopping
    when the stop kept the first attempt back; once `halt` is set, no attempt is made again,
    nor once `withdrawn()` says a withdrawal of one of its commands was asked (GaveUp: its
    caller closes those withdrawn, store/withdraw.py)."""
    # `hidden`: an attempt was answered what a post never sent twice would not take for
    # turned away (a 503 without CCNow's words, `Backend fetch failed`): it is tried again,
    # but CCNow may have run it (a tracking upload its retry then finds refused may be there).
    n, reached, hidden, turned = 0, False, False, None
    word, sent_at, last, wait = "", 0.0, None, None
    while True:
        reached_before, hidden_before, sent_at = reached, hidden, time.time()
        try:
            reply = await _send(session, url, headers, data, timeout, gate, halt)
        except Stopping:
            if n == 0:
                raise  # nothing was sent: not a failure the caller reports
            raise _gave_up(word, reached, sent_at, last, wait, hidden, turned) from None
        except NotSent as exc:
            word, last, wait = str(exc).replace(" ", "_"), None, None  # none reached
        except Uncertain as exc:
            if (came := _came_in_part(exc)) is not None:
                # Its body broke after lines for some of its orders (a Content-Length or
                # chunks not all come, the rest not within the timeout): sent again whole, it
                # would apply those again.
                part = came._replace(
                    reached_before=reached_before, tried_before=n > 0, hidden_before=hidden_before
                )
                raise Lost(str(exc), cut=part) from None
            reached, word, last, wait = True, str(exc), None, None
        else:
            reply = reply._replace(
                reached_before=reached_before, tried_before=n > 0, hidden_before=hidden_before
            )
            if not reply.body_began and refuses_a_field(reply.status, reply.body):
                # Read, not retried: its words refuse a command, as in a 200.
                return reply
            if reply.body_began or is_retryable(reply.status):
                # A 429 or 503 turns the post away before it runs, unless its words say
                # otherwise; a refusal whose body broke after it began is a lost answer (the
                # rest may have been the orders' lines), tried again as one.
                reached = reached or not not_run(reply)
                turned = reply.status if not_run(reply) else turned
                unheard = not turned_away(reply.status, reply.body, once=True)
                hidden = hidden or reply.body_began or unheard
                cut = "_cut_short" if reply.body_began else ""
                word, last = f"http_{reply.status}{cut}", reply
                wait = parse_retry_after(reply.retry_after, datetime.now(timezone.utc))
            elif is_complete(reply):
                return reply
            elif in_part(reply):
                # Lines for some of its orders came whole before the cut: they say what CCNow
                # did with those, which a post sent again whole would apply again.
                raise Lost("truncated_answer", cut=reply)
            else:
                reached, word, last, wait = True, "truncated_answer", None, None
        if (
            n >= retry.attempts
            or _queued(retry, wait)
            or not await waited_to_retry(retry, n, wait, halt, log, url, word)
            # Asked after the wait, which a withdrawal may have come in.
            or (withdrawn is not None and await withdrawn())
        ):
            raise _gave_up(word, reached, sent_at, last, wait, hidden, turned)
        n += 1


def _queued(retry: RetryConfig, wait: float | None) -> bool:
    """Whether a post's last answer asks (Retry-After) to wait longer than a retry within it
    may: it ends, queued as long as asked (a retry sooner would meet the rate limit it asks to
    spare, once a retry until the last). So does one an earlier attempt of which may have
    reached CCNow (a lost answer, then a proxy's 503 asking an hour): its `wait` goes with
    the lost answer (`Lost.wait`), and the post is queued as long, as one turned away is."""
    return wait is not None and wait > retry.max_backoff_s


def _gave_up(
    word: str,
    reached: bool,
    sent_at: float,
    last: Reply | None,
    wait: float | None,
    hidden: bool,
    turned: int | None,
) -> GaveUp:
    return GaveUp(
        word,
        reached=reached,
        sent_at=sent_at,
        http_status=None if last is None else last.status,
        wait=wait,
        hidden=hidden,
        last=last,
        turned=turned,
    )
