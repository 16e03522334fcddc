"""Posting one batch of CCNow actions and reading its answer, and telling the ways it can fail
apart: never sent (NotSent, or Stopping: the stop began before it left), turned away before it
ran (SourceError: a 429, a 503, a login wall), refused by CCNow in `error_message` lines alone
(Refused: nothing was applied; a line naming a command's field refuses that command, the others
are decided by no words), or lost (Lost: CCNow may have applied it, so an `adjust` must not be
sent again)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from reconciler import USER_AGENT
from reconciler.config import CCNowConfig
from reconciler.sources.ccnow import MAX_BODY_BYTES
from reconciler.sources.ccnow_answer import (
    Answer,
    answered_orders,
    is_complete,
    parse_answer,
    refusal_lines,
    says_down,
)
from reconciler.sources.errors import ProtocolError, SourceError
from reconciler.sources.http import Reply, RequestFailed, request
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_form import form
from reconciler.writes.in_flight import Stopping
from reconciler.writes.once import AnswerTooLarge, NotSent, Uncertain, send_once

# The actions' logger: a post's retries are logged under the name operators filter on.
log = logging.getLogger("reconciler.writes.ccnow_actions")

# Statuses that may come after CCNow ran the post (its own failure, a gateway that forwarded
# it): the actions in it may have been applied. Any other status than 200 means not.
MAYBE_APPLIED = frozenset({500, 502, 504})
# The fields of the document's table that carry a command's own values, as CCNow writes them
# in an `error_message`, in any case: with their `x_` (`x_amount`: the commands that carry
# one), numbered (`x_amount_1`, `amount_1`: the command at that place in the post), or both. A
# bare word (`Database error, action not performed`) is English, not a field. The account's
# fields (`x_clientid`, `x_password`) are not here.
_NAMES = "orderid|action|notes|amount|trackname|tracknumber"
_FIELD = re.compile(rf"\b(?=x_|(?:{_NAMES})_[0-9])(?:x_)?({_NAMES})(?:_([0-9]+))?\b", re.I)
_ATTRIBUTE = {"orderid": "order_id"}


class Refused(Exception):
    """CCNow answered the post with `error_message` lines alone: nothing of it was applied.
    `words`: command id -> the line naming one of its fields (refused: the same command would
    be refused again); `held`: command id -> a line saying CCNow is down that names one of its
    fields (no refusal: no day, three days at most, ccnow_outcome); `whole`: the first line
    naming no field, which decides the other commands by no words of it (None: every line
    names a field); `down`: that line says CCNow is down (maintenance)."""

    def __init__(
        self, words: dict[int, str], whole: str | None, down: bool, held: dict[int, str]
    ) -> None:
        super().__init__(whole or next(iter({**held, **words}.values())))
        self.words = words
        self.whole = whole
        self.down = down
        self.held = held


class Lost(Exception):
    """The post may have reached CCNow but its answer was lost (timeout, dropped connection,
    an answer cut off, or what came back may follow CCNow running it: a 500, 502 or 504, an
    HTML page, an unreadable body, an error line beside the orders' lines). `str()` is a short
    word."""


async def post_batch(
    session: aiohttp.ClientSession,
    cfg: CCNowConfig,
    batch: Sequence[cmds.Command],
    *,
    once: bool,
    gate: asyncio.Semaphore,
    halt: asyncio.Event | None = None,
) -> tuple[Answer, float]:
    """Post one batch; return the answer, parsed, and when the attempt that brought it was sent
    (its lines are as of then). Raise Stopping, NotSent, Lost, Refused or SourceError. Once
    `halt` is set (the daemon stops), nothing is posted (Stopping), and a failed attempt is not
    retried. Each attempt waits for its turn within the account's bound `gate`."""
    if halt is not None and halt.is_set():
        raise Stopping
    data = urlencode(form(cfg, batch)).encode("ascii")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "text/plain",
        "User-Agent": USER_AGENT,
    }
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
    if once:
        reply = await _post_once(session, URL(cfg.url), headers, data, timeout, gate, halt)
    else:
        try:
            reply = await request(
                session,
                "POST",
                URL(cfg.url),
                headers=headers,
                data=data,
                timeout=timeout,
                gate=gate,
                retry=cfg.retry,
                max_body=MAX_BODY_BYTES,
                log=log,
                complete=is_complete,
                halt=halt,
            )
        except RequestFailed as exc:
            if exc.reached:
                raise Lost(exc.word) from None
            if exc.turned_away:
                raise SourceError(str(exc)) from None  # nothing ran
            raise NotSent(exc.word) from None
    if reply.status in MAYBE_APPLIED:
        # A gateway's 502 or 504 is the classic answer to a post that did reach CCNow.
        raise Lost(f"http_{reply.status}")
    if reply.status != 200:
        # Refused before anything ran (a rate limit, a login wall, a wrong url).
        raise SourceError(f"http {reply.status}")
    try:
        if not _is_utf8(reply.body):
            # A poll's answer keeps its readable lines; a post that may have been applied
            # cannot trust what a line with a stray byte says of its order.
            raise ProtocolError("answer is not UTF-8")
        return parse_answer(reply.body, secrets=(cfg.password.reveal(),)), reply.sent_at
    except ProtocolError:
        # Not CCNow's protocol (an HTML page, an empty or unreadable body): whether the
        # post was applied is unknown.
        raise Lost("unreadable_answer") from None
    except SourceError:
        if answered_orders(reply.body):
            # An error line beside lines for the posted orders: some of it was applied.
            raise Lost("error_with_order_lines") from None
        if lines := refusal_lines(reply.body, (cfg.password.reveal(),)):
            raise _refused(lines, batch) from None
        raise


def _refused(lines: list[str], batch: Sequence[cmds.Command]) -> Refused:
    """Sort an answer's `error_message` lines: a line saying CCNow is down decides nothing,
    whatever field it names (checked first: `system down for maintenance: x_action unavailable
    until 10:00` is no refusal of every command for good), and one naming a field says so of
    the commands it names only; any other line naming a field refuses the commands it names;
    the lines naming none decide nothing."""
    words: dict[int, str] = {}
    held: dict[int, str] = {}
    unnamed: list[str] = []
    down: list[str] = []
    for line in lines:
        named = [c for m in _FIELD.finditer(line) for c in _named_by(m, batch)]
        if says_down(line):
            for c in named:
                held.setdefault(c.id, line)
            if not named:
                down.append(line)
            continue
        for c in named:
            words.setdefault(c.id, line)
        if not named:
            unnamed.append(line)
    # A line that decides (a refusal naming no field) is the answer kept; the post is taken
    # for an outage only when every line naming no field says CCNow is down.
    whole = next(iter(unnamed + down), None)
    return Refused(words, whole, bool(down) and not unnamed, held)


def _named_by(field: re.Match[str], batch: Sequence[cmds.Command]) -> list[cmds.Command]:
    """The commands a field name in an answer points at: the one at its number, else those
    carrying the field (every command, if none does: the post was refused for it all the
    same)."""
    name, number = field.group(1), field.group(2)
    if number is not None and 1 <= int(number) <= len(batch):
        return [batch[int(number) - 1]]
    attribute = _ATTRIBUTE.get(name, name)
    carrying = [c for c in batch if getattr(c, attribute) is not None]
    return carrying or list(batch)


async def _post_once(
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
    have been lost after CCNow got the post."""
    try:
        reply = await send_once(
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
    except AnswerTooLarge:
        # CCNow got the post and answered something we cannot read: it may have applied it.
        raise Lost("answer_too_large") from None
    except Uncertain as exc:
        raise Lost(str(exc)) from None
    if not is_complete(reply):
        raise Lost("truncated_answer")
    return reply


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
