"""Posting one batch of CCNow actions and reading its answer, and telling the ways it can fail
apart: never sent (NotSent, or Stopping: the stop began before it left), turned away before it
ran (TurnedAway: a status that says so, such as a 429, a login wall, a post too large or a 503
saying CCNow is down, for an `adjust` in CCNow's own words only), refused by CCNow in
`error_message` lines alone (Refused: nothing was applied; a line naming a command's field
refuses that command, the others are decided by no words; in a 200, or in a 413 or 414, which
no size bound before CCNow gave then), or lost (Lost: CCNow may have applied it, so an `adjust`
must not be sent again; with the Retry-After its last answer asked)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import NamedTuple
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from reconciler import USER_AGENT
from reconciler.config import CCNowConfig
from reconciler.redact import answer_secrets
from reconciler.sources.ccnow_answer import (
    MAX_TEXT_LENGTH,
    SPACE,
    Answer,
    EmptyAnswer,
    field_of,
    parse_answer,
    says_down,
)
from reconciler.sources.ccnow_cut import drop_line, undecided_line
from reconciler.sources.ccnow_refusal import (
    answered_orders,
    error_line,
    message_lines,
    refusal_lines,
)
from reconciler.sources.errors import AnswerTooLarge, ProtocolError, SourceError, UndecodableAnswer
from reconciler.sources.http import Reply, parse_retry_after
from reconciler.store import commands as cmds
from reconciler.taken import TAKEN
from reconciler.writes.ccnow_fields import carries
from reconciler.writes.ccnow_form import form
from reconciler.writes.ccnow_send import (
    FIELD,
    GaveUp,
    Lost,
    not_ccnows,
    post_once,
    post_retrying,
    refuses_a_field,
    turned_away,
    unreadable,
    whole_lines,
)
from reconciler.writes.in_flight import Stopping
from reconciler.writes.once import NotSent

__all__ = ("Lost", "Posted", "Refused", "TurnedAway", "post_batch")

# The blanks a line is trimmed of (ccnow_answer.SPACE), as bytes.
_BLANK_ENDS = tuple(c.encode() for c in SPACE)


class Posted(NamedTuple):
    """CCNow's answer to a post, parsed; when the attempt that brought it was sent (its lines
    are as of then); whether an earlier attempt of the post may have reached CCNow (its answer
    lost): a ship or cancel that answer refuses as not pending may have been taken by it."""

    answer: Answer
    asked: float
    reached_before: bool = False
    # CCNow's words about the post that name no order and are no documented answer
    # (`message discount recorded`): kept as the answer of the commands they leave unsettled.
    said: str | None = None
    # An earlier attempt of the post was made, turned away or not (a proxy's 503 after CCNow
    # applied it): a ship or cancel refused as not pending is read first, as in a later post.
    tried_before: bool = False
    # An earlier attempt's answer may hide that CCNow ran it (a 503 without CCNow's words),
    # though it was tried again: a tracking upload refused in its order's line is `uncertain`.
    hidden_before: bool = False


class TurnedAway(SourceError):
    """The post was turned away before anything ran (a rate limit, a login wall, a wrong url,
    a 503 saying CCNow is down, a post too large); `wait`: what its Retry-After asked, in
    seconds (None: none), so that it is not posted again before; `too_large`: turned away by
    a bound on a request's size (413, 414: a web server's, a proxy's), which turns the same
    post away each time, why (None: another status); `hidden`: an attempt's answer may hide
    that CCNow ran it all the same (a 503 without CCNow's words: a proxy's, after CCNow got it
    and was slow), which a tracking upload queued so keeps (Command.maybe_reached_at)."""

    def __init__(
        self, word: str, wait: float | None, status: int | None = None, *, hidden: bool = False
    ) -> None:
        super().__init__(word)
        self.wait = wait
        self.hidden = hidden
        # What turned it away, as a withdrawn command's words name it (Command.turned_away).
        self.turned = None if status is None else f"HTTP {status}"
        self.too_large: str | None = None
        if status in (413, 414):
            what = "body" if status == 413 else "url"
            self.too_large = (
                f"http {status}: the post of this order alone was turned away as too large "
                f"(its {what}: a bound of CCNow's web server or a proxy before it); nothing ran"
            )


class Refused(Exception):
    """CCNow answered the post with `error_message` lines alone: nothing of it was applied.
    `words`: command id -> the line naming one of its fields (refused: the same command would
    be refused again); `held`: command id -> a line saying CCNow is down that names one of its
    fields (no refusal: no day, three days at most, ccnow_outcome); `whole`: the first line
    naming no field, which decides the other commands by no words of it (None: every line
    names a field); `down`: that line says CCNow is down (maintenance); `wait`: what the
    answer's Retry-After asked, in seconds (None: none), which the commands it leaves queued
    wait."""

    def __init__(
        self,
        words: dict[int, str],
        whole: str | None,
        down: bool,
        held: dict[int, str],
        wait: float | None = None,
    ) -> None:
        super().__init__(whole or next(iter({**held, **words}.values())))
        self.words = words
        self.whole = whole
        self.down = down
        # An earlier attempt of the post may have reached CCNow and applied it, or was made
        # at all (Posted).
        self.reached_before = False
        self.tried_before = False
        self.hidden_before = False  # one's answer may hide that it ran (Posted.hidden_before)
        self.held = held
        self.wait = wait


async def post_batch(
    session: aiohttp.ClientSession,
    cfg: CCNowConfig,
    batch: Sequence[cmds.Command],
    *,
    once: bool,
    gate: asyncio.Semaphore,
    halt: asyncio.Event | None = None,
    secrets: Sequence[str] = (),
    withdrawn: Callable[[], Awaitable[bool]] | None = None,
) -> Posted:
    """Post one batch; return the answer. Raise Stopping, NotSent, Lost, Refused or TurnedAway.
    Once `halt` is set (the daemon stops) nothing is posted (Stopping) and no failed attempt is
    retried, nor once `withdrawn()` says one of its commands was withdrawn. Each attempt waits
    its turn in the account's `gate`. `secrets`: the config's, masked, never taken for a status."""
    if halt is not None and halt.is_set():
        raise Stopping
    data = urlencode(form(cfg, batch)).encode("ascii")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "text/plain",
        "User-Agent": USER_AGENT,
    }
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
    try:
        sent = (session, URL(cfg.url), headers, data, timeout, gate, halt)
        reply = await (post_once(*sent) if once else post_retrying(*sent, cfg.retry, withdrawn))
    except Lost as exc:
        if exc.cut is None:
            raise
        reply = exc.cut
        secrets = answer_secrets(cfg.password.reveal(), secrets)
        raise _in_part(str(exc), whole_lines(reply.body), secrets, batch, reply, once) from None
    except AnswerTooLarge:
        # An answer too large to read came after CCNow got the post: it may have run it.
        raise Lost("answer_too_large") from None
    except UndecodableAnswer:
        # So did one in an encoding that cannot be decoded (`br`): never posted again.
        raise Lost("undecodable_answer") from None
    except GaveUp as exc:
        if exc.reached:
            # Its last answer's Retry-After (a proxy's 503 after an earlier attempt was lost)
            # holds the post queued, as one turned away is. A gateway's page: its log line.
            seen = not_ccnows(exc.last, answer_secrets(cfg.password.reveal(), secrets))
            raise Lost(exc.word, exc.wait, seen=seen) from None
        if exc.turned_away or exc.hidden or exc.turned is not None:
            # Not run as they say, but one may hide that it was (a proxy's 503). One turned
            # away (a 429) whose retry then never connected was sent all the same: not NotSent.
            status = exc.turned if exc.http_status is None else exc.http_status
            raise TurnedAway(str(exc), exc.wait, status, hidden=exc.hidden) from None
        raise NotSent(str(exc)) from None
    secrets = answer_secrets(cfg.password.reveal(), secrets)
    wait = parse_retry_after(reply.retry_after, datetime.now(timezone.utc))
    if reply.status != 200:
        if reply.body_began:
            # A status that says the post was not run, whose body broke after it began: the
            # rest may have been the orders' lines (CCNow ran it). An adjust is never sent
            # twice on a word that was not heard whole.
            raise Lost(f"http_{reply.status}_cut_short", wait)
        read = reply.status in (413, 414) or refuses_a_field(reply.status, reply.body)
        if read and (lines := refusal_lines(reply.body, secrets)):
            # CCNow's own error lines alone: its program read the post and refused it, as in
            # a 200 (nothing applied; a line naming a field refuses that command; its
            # Retry-After kept). No size bound before it turned the post away: not halved, nor
            # its one order refused as too large (`system down for maintenance` would have
            # ended it for good); a 429 refusing a field is no rate limit's.
            raise _refused(lines, batch, reply, wait)
        if turned_away(reply.status, reply.body, once=once) and not reply.reached_before:
            # Refused before anything ran (a rate limit, a login wall, a wrong url).
            raise TurnedAway(f"http {reply.status}", wait, reply.status, hidden=reply.hidden_before)
        # A gateway's 502 or 504 is the classic answer to a post that did reach CCNow.
        raise Lost(f"http_{reply.status}", wait, seen=not_ccnows(reply, secrets))
    body = reply.body
    try:
        # A byte that is not UTF-8 is read as the polls read it (`answer_text`): the line
        # holding it is its order's alone, and says nothing of it but in words that can be
        # read (an error line's `error_message`); a status word it is in is no status
        # (`unreadable`: an adjust is uncertain, the others sent again). The other orders'
        # lines still say what CCNow did with them.
        # A chunked answer's last line without its line end may be a longer one cut short
        # (`canceled` of `canceled_tmp`), or whole (a CGI's answer may end so: its chunks ended
        # and the line reads as a whole one, `is_complete`). A ship's or cancel's is taken for
        # none: its order's status, read then, decides, as a poll asks such an order again.
        # An adjust's or a tracking upload's counts: no status read shows they took, and taken
        # for none every time, the adjust would wait for a person, the upload be sent again.
        # But one that ends in a blank (as it came) is taken for none: the cut may have come right
        # after a word (`pending review` cut to `pending `).
        answer = _parsed(body, secrets, batch)
        cut = undecided_line(reply)
        if cut in {c.order_id for c in batch if c.action in TAKEN} or (
            cut is not None and body.endswith(_BLANK_ENDS)
        ):
            answer, _ = drop_line(answer, cut)
        tried, hidden = reply.tried_before, reply.hidden_before
        return Posted(answer, reply.sent_at, reply.reached_before, None, tried, hidden)
    except ProtocolError:
        # Not CCNow's protocol (an HTML page, an empty or unreadable body): did it run?
        raise unreadable(reply, secrets) from None
    except SourceError:
        # The whole body, an undecided last line too: a line for an order says the post ran.
        if answered_orders(body):
            # An error line, or a `message` of CCNow's naming no order, beside lines for the
            # posted orders: some of it was applied. Those lines say what CCNow did with their
            # orders (a last line without its line end only when a Content-Length framed it:
            # else it may be a longer one, cut). Its label says which of the two came.
            whole = body if reply.framed else whole_lines(body)
            word = "error_with_order_lines" if error_line(body) else "message_with_order_lines"
            raise _in_part(word, whole, secrets, batch, reply, once) from None
        if lines := refusal_lines(body, secrets):
            raise _refused(lines, batch, reply, wait) from None
        if words := message_lines(body, secrets):
            # CCNow's words naming no order (`message discount recorded`): nothing says it did
            # not run the post, as when its answer has no line for an order.
            said = "; ".join(words)
            if len(said) > MAX_TEXT_LENGTH:  # as each line is: an event and a log line carry it
                said = said[: MAX_TEXT_LENGTH - 1] + "\u2026"
            tried, hidden = reply.tried_before, reply.hidden_before
            return Posted(Answer((), ()), reply.sent_at, reply.reached_before, said, tried, hidden)
        raise unreadable(reply, secrets) from None


def _parsed(body: bytes, secrets: Sequence[str], batch: Sequence[cmds.Command]) -> Answer:
    """An action's answer, read strictly first; a line off the protocol that starts with a
    posted order's id (`397-10-1159: pending`, a no-break space, a latin-1 one) is then that
    order's alone, with no status to read, as on a poll (`asked`): the other orders' lines still
    say what CCNow did with them. Read with `asked` only when the strict read found a line off
    the protocol: it finds no `error_message` line naming no order then, whose owner `asked`
    would also pick (an answer of such lines alone is a refusal, `_refused`)."""
    try:
        return parse_answer(body, secrets=secrets)
    except EmptyAnswer:
        raise
    except ProtocolError:
        return parse_answer(body, secrets=secrets, asked=[c.order_id for c in batch])


def _in_part(
    word: str,
    whole: bytes,
    secrets: Sequence[str],
    batch: Sequence[cmds.Command],
    reply: Reply,
    once: bool,
) -> Lost:
    """A lost answer (`word`) whose whole lines (`whole`) hold lines for some of the post's
    orders: those lines, read alone, say what CCNow did with their orders (Lost.in_part); the
    others' is unknown. A plain Lost when they cannot be read, and for a post never sent twice
    (`once`, an adjust) when another line is among them (an error line beside them may be
    about any of its discounts, as in a whole answer)."""
    given = [x for x in re.split(rb"\r\n|\r|\n", whole) if x.strip()]
    lines = [x for x in given if answered_orders(x)]
    # Its Retry-After is kept: none of its commands is posted again before it asks.
    wait = parse_retry_after(reply.retry_after, datetime.now(timezone.utc))
    if once and (len(lines) < len(given) or not _order_line_start(reply.body[len(whole) :])):
        return Lost(word, wait)
    try:
        answer = _parsed(b"\n".join(lines) + b"\n", secrets, batch)
    except SourceError:
        return Lost(word, wait)
    part = (answer, reply.sent_at, reply.reached_before, reply.tried_before, reply.hidden_before)
    return Lost(word, wait, in_part=part)


def _order_line_start(tail: bytes) -> bool:
    """Whether what came after an answer's whole lines (a last line without its line end) may
    be an order's line cut short: nothing, or a first word of an order id's characters. An
    error line there (`error_message daily li`) is as much an error line as a whole one."""
    words = tail.split(maxsplit=1)
    return not words or re.fullmatch(rb"[0-9-]+", words[0]) is not None


def _refused(
    lines: list[str], batch: Sequence[cmds.Command], reply: Reply, wait: float | None
) -> Refused:
    """Sort an answer's `error_message` lines: a line saying CCNow is down decides nothing,
    whatever field it names (checked first: `system down for maintenance: x_action unavailable
    until 10:00` is no refusal of every command for good), and one naming a field says so of
    the commands it names only; any other line naming a field refuses the commands it names;
    the lines naming none decide nothing. `reply`: its answer, which says whether an earlier
    attempt of the post was made or may have reached CCNow (Refused.reached_before);
    `wait`: its Retry-After (Refused.wait)."""
    words: dict[int, str] = {}
    held: dict[int, str] = {}
    unnamed: list[str] = []
    down: list[str] = []
    for line in lines:
        named = [c for m in FIELD.finditer(line) for c in _named_by(m, batch)]
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
    refused = Refused(words, whole, bool(down) and not unnamed, held, wait)
    refused.reached_before, refused.tried_before = reply.reached_before, reply.tried_before
    refused.hidden_before = reply.hidden_before
    return refused


def _named_by(field: re.Match[str], batch: Sequence[cmds.Command]) -> list[cmds.Command]:
    """The commands a field name in an answer points at: the one at its number when it sends
    that field (none else: `amount_1` of a tracking upload is no field of it), else those
    carrying the field (every command, if none does: the post was refused for it all the
    same)."""
    _, number = field_of(field)
    if number is not None and 1 <= number <= len(batch):
        c = batch[number - 1]
        return [c] if carries(c, field) else []
    carrying = [c for c in batch if carries(c, field)]
    return carrying or list(batch)
