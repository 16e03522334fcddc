"""CCNow order actions: how each command ends (refused without asking CCNow, closed by its
answer), and what a run did."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from reconciler.config.names import account_option
from reconciler.events import Event
from reconciler.logs import fields
from reconciler.model import Observation, OrderKey
from reconciler.sources.ccnow_answer import DOCUMENTED, Answer, OrderLine, by_id, says_down
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.taken import TAKEN
from reconciler.writes.ccnow_events import event_of, order_of
from reconciler.writes.ccnow_form import local_refusal
from reconciler.writes.ccnow_taken import Tally
from reconciler.writes.in_flight import Stopping

# The sender's logger: its lines name the module that sends.
log = logging.getLogger("reconciler.writes.ccnow_actions")

# How long a command is sent again while CCNow's answers do not settle its order (no line for
# it, a post refused in words naming no field of it), and nothing else: then a person decides.
UNSETTLED_FOR_S = 86400.0
# How long answers that settle nothing can keep a command queued in all, lines saying CCNow is
# down included (they start no day, so a refusal taken for one would keep it for ever).
HELD_FOR_S = 3 * 86400.0
# A command sent this long after it was due: nothing ran to send it (the daemon was stopped).
LATE_S = 3600.0


def took(action: str, status: str) -> bool:
    """Whether an order's status says a ship or cancel took (CCNow's words in another case,
    `MARK_SHIPPED`, were read as the documented word)."""
    return status in TAKEN.get(action, ())


Refusals = list[tuple[cmds.NewCommand, str]]


async def sort_out(
    store: Store, fresh: Sequence[cmds.NewCommand], accounts: Sequence[str]
) -> tuple[list[cmds.NewCommand], Refusals, Refusals]:
    """Split new commands, by what the store knows, into those to send, those refused without
    asking CCNow (the order is past pending) and discounts that wait for an earlier open one
    (`accounts`: the configured CCNow accounts, for the command a refusal advises)."""
    states = await store.orders.load(OrderKey("ccnow", c.account, c.order_id) for c in fresh)
    wanted: list[cmds.NewCommand] = []
    past_pending: Refusals = []
    waiting: Refusals = []
    for c in fresh:
        why = local_refusal(states.get(OrderKey("ccnow", c.account, c.order_id)))
        if why is not None:
            past_pending.append((c, why))
        elif c.action == "adjust" and (wait := await _open_adjust(store, c, accounts)) is not None:
            waiting.append((c, wait))
        else:
            wanted.append(c)
    return wanted, past_pending, waiting


async def _open_adjust(store: Store, c: cmds.NewCommand, accounts: Sequence[str]) -> str | None:
    """Why a new discount waits: an earlier one of the order is uncertain, or queued or on its
    way (its answer may be lost too), and both taken would discount twice (and `resolve`
    would settle them as one)."""
    earlier = await cmds.of_order(store, c.account, c.order_id, ["queued", "sending", "uncertain"])
    adjust = next((e for e in earlier if e.action == "adjust"), None)
    return None if adjust is None else second_discount(adjust, accounts)


def second_discount(earlier: cmds.Command, accounts: Sequence[str]) -> str:
    """Why a discount is refused while an earlier one of its order is open (`accounts`: the
    configured CCNow accounts, for the resolve advised)."""
    if earlier.state == "uncertain":
        # `--action adjust` always: without it a resolve refuses an order whose uncertain
        # commands are of several actions (a ship may become uncertain after this advice).
        option = account_option(accounts, earlier.account) + " --action adjust"
        return (
            f"an earlier discount of this order (#{earlier.id}) is uncertain: settle it with "
            f"`reconciler ccnow resolve {earlier.order_id} --sent|--not-sent{option}` first"
        )
    doing = "is being sent" if earlier.state == "sending" else "is queued"
    return (
        f"an earlier discount of this order (#{earlier.id}) {doing}: CCNow's answer to it "
        "comes first"
    )


# A whole post failed: try again after this, doubling per attempt, at most an hour.
RETRY_FIRST_S = 30.0
RETRY_MAX_S = cmds.RETRY_MAX_S


def retry_delay(batch: Sequence[cmds.Command], wait: float | None = None) -> float:
    """How long a batch that did not end waits for its next post: doubling per attempt, or
    what the answer's Retry-After asks (`wait`, seconds) when longer; at most an hour."""
    doubling = RETRY_FIRST_S * 2.0 ** max(c.attempts for c in batch)
    return min(max(doubling, wait or 0.0), RETRY_MAX_S)


def lines_by_id(answer: Answer) -> dict[str, OrderLine | None]:
    """Return the answer line per order id; None for an id whose lines disagree, by the polls'
    rule (`by_id`): lines that differ only in the case of a status word, the case and blanks
    of an error line's words or the id's hyphens are one answer, any other two are not."""
    lines, disagreeing = by_id(answer)
    # A line with columns after its status, beside one without, is still one with them.
    cut = {line.order_id for line in answer.orders if line.cut}
    return {
        i: None if i in disagreeing else dataclasses.replace(line, cut=i in cut)
        for i, line in lines.items()
    }


def as_reached(batch: Sequence[cmds.Command], at: float) -> list[cmds.Command]:
    """A batch an earlier attempt of the post may have reached CCNow with, as such (its answer
    is then no word that CCNow did not take it)."""
    return [dataclasses.replace(c, maybe_reached_at=c.maybe_reached_at or at) for c in batch]


def taken_how(c: cmds.Command, unsettled: bool) -> str:
    """Why a ship or cancel whose order is where it puts it is done: this answer did not
    settle the order; or CCNow refused it as not pending, after an earlier post that may have
    reached CCNow, else (an earlier post refused as a whole: maintenance) before any did."""
    if unsettled:
        return "the order's status"
    if c.maybe_reached_at is not None:
        return "taken by an earlier attempt"
    return "already past pending when CCNow got this command"


# What a command whose order the answer did not settle keeps as its answer.
NO_LINE = "no single answer line for this order"
UNREADABLE_LINE = "no status word to read in this order's answer line"


def day_began(c: cmds.Command, now: float) -> float:
    """When a command's day of answers that did not settle it began, counting one at `now`:
    at the first of them in a row (an answer of another kind, a maintenance, a lost answer,
    starts it again), or now when it was sent long after it was due (time nothing ran counts
    no more than a maintenance)."""
    if c.unsettled_since is None or now - c.next_attempt_at > LATE_S:
        return now
    return c.unsettled_since


def held_began(c: cmds.Command, now: float) -> float:
    """When a command's answers that settle nothing began, counting one at `now`: as its day
    (`day_began`), but a line saying CCNow is down does not start it again."""
    if c.held_since is None or now - c.next_attempt_at > LATE_S:
        return now
    return c.held_since


def says_down_for(line: OrderLine | None) -> bool:
    """Whether an order's own answer line is an error saying CCNow is down (by the phrases of a
    whole post's lines, `says_down`): it decides nothing about the command."""
    return line is not None and line.status is None and says_down(line.error or "")


def outcome(
    c: cmds.Command, line: OrderLine | None, no_line: str = NO_LINE
) -> tuple[cmds.State, str]:
    """Return how CCNow's answer line for a command's order closes it, and the words kept
    (`no_line` when there is no line for it): `queued` again when the answer does not settle
    the order (sent again later)."""
    if line is None or line.unreadable:
        # No line, lines that disagree (`message no_pending_orders`, only other orders'
        # lines), or a line whose status cannot be read (`mark_shipped.`): nothing says CCNow
        # did not run it. An adjust may have been applied and would discount twice if sent
        # again: it waits for a person. The others are safe to send again, as after a lost
        # answer: a ship or cancel that took is then refused as not pending and found taken
        # by the status check; a tracking upload is sent once more.
        words = no_line if line is None else UNREADABLE_LINE
        return ("uncertain" if c.action == "adjust" else "queued"), words
    if says_down_for(line):
        # CCNow down for this order (`ID error_message Database error, try again later`):
        # no refusal, as for a post refused in such words (`settle` with `down`). But the post
        # ran (other lines came with it): an adjust may have been applied, and waits for a
        # person rather than discount twice.
        return ("uncertain" if c.action == "adjust" else "queued"), line.error or "error"
    if line.status is None:
        return "refused", line.error or "error"
    if line.status not in DOCUMENTED:
        # An undocumented status (`pending review`) is never guessed: it may say the action
        # took, or not. A person looks in CCNow's backroom and settles it.
        return "uncertain", f"answered {line.status!r}, a status CCNow does not document"
    taken = TAKEN.get(c.action)
    if taken is not None and not took(c.action, line.status):
        return "refused", f"answered {line.status}, not {taken[0]}"
    if taken is None and line.status != "pending":
        if c.action == "adjust" and line.status == "mark_shipped":
            # The document's own example answers a discount applied beside a ship with this
            # one line: whether CCNow applies one to an order marked shipped is not said.
            # Called refused, it might be given again another way: a person looks.
            return "uncertain", f"answered mark_shipped, not pending ({SHIPPED_DISCOUNT})"
        # CCNow takes actions on pending orders only: a discount or tracking upload answered
        # with another status (`completed`, `refunded`) was not applied to a pending order.
        return "refused", f"answered {line.status}, not pending"
    if line.cut and taken is None:
        # `pending E42`: an adjust is answered `pending` whether CCNow applied it or not, and
        # the column may be a refusal's code. Neither is sent again (a discount would be
        # doubled, a tracking number uploaded twice): a person looks in CCNow's backroom.
        return "uncertain", f"answered {line.status} with more columns ({MORE_COLUMNS})"
    return "succeeded", line.status


MORE_COLUMNS = "they may say CCNow did not apply it"


class Settled(NamedTuple):
    """How an answer leaves a command: its state and words, its order's status and when that
    was asked (None: not known), and for one left queued the start of its day and of its
    answers that settle nothing (`held`)."""

    state: cmds.State
    words: str
    status: str | None
    asked: float | None
    since: float | None
    held: float | None = None


async def settle(
    c: cmds.Command,
    state: cmds.State,
    words: str,
    status: str | None,
    asked: float | None,
    *,
    whole: bool,
    now: float,
    read: Callable[[], Awaitable[Observation | None]],
    down: bool = False,
    named: bool = False,
    tried: bool = False,
    hidden: bool = False,
) -> Settled:
    """How an answer leaves a command, given what it says of it (`queued`: it did not settle
    it; `whole`: a post refused in words naming no field of it; `down`: in words saying CCNow
    is down; `named`: refused by a line naming its field; `tried`: an earlier attempt of this
    post was made; `hidden`: one's answer may hide that CCNow ran it) and its order's status as
    asked then. A ship or cancel whose order's status (`read` once; Stopping: not read) shows
    it took is done; a tracking upload refused after a post or attempt that may have added it
    is `uncertain`; one left queued after a day of answers that did not settle it, or three
    days of those and lines saying CCNow is down, is `uncertain`, never `refused`."""
    # A line naming the command's field refuses it, whatever else it says: the post an earlier
    # attempt may have reached CCNow with carried the same fields, refused the same way.
    reached = c.maybe_reached_at is not None and not named
    if state == "refused" and (reached or (hidden and not named)) and c.action == "track":
        # An earlier post, or an attempt of this one a proxy's 503 answered, may have added it
        # (CCNow refuses the next one: `order not pending`, the order shipped meanwhile), and
        # no read can tell: a status query answers the order's status word alone, which an
        # upload leaves as it was. CCNow may have it: a person looks; it is never sent again.
        # (An attempt turned away in words that say nothing ran, a 429, added nothing.)
        return Settled("uncertain", f"{words} ({MAYBE_TAKEN})", status, asked, None)
    unsettled = state == "queued"
    # An attempt of this post before this answer (a proxy's 503 after CCNow ran it too) may
    # have reached CCNow as an earlier post may: a read that says nothing leaves it queued.
    maybe = reached or (tried and not named)
    # A refusal (`not pending`) after a post that may have reached CCNow with it, in this post
    # or an earlier one, may say that post took.
    tried = tried or c.attempts > 0 or c.maybe_reached_at is not None
    span = _ends(c, now, down) if unsettled else None
    # An answer without the order's line may follow CCNow running it: the status is read at
    # once. A post refused as a whole ran nothing: the status is read before the command ends.
    now_read = (unsettled and (not whole or span is not None)) or (state == "refused" and tried)
    if c.action in TAKEN and now_read:
        try:
            found = await read()
        except Stopping:
            # Not read for the stop: the next start sends it again and reads it.
            return Settled("queued", words, status, asked, *_began(c, now, down, unsettled))
        if found is not None:
            status, asked = found.status, found.asked
        if status is not None and took(c.action, status):
            return Settled(
                "succeeded", f"{status} ({taken_how(c, unsettled)})", status, asked, None
            )
        # A word CCNow does not document (`on hold`, `mark_shipped extra`) is never guessed:
        # it may say the post took, or not; it says no more than a read that failed.
        guessed = found is not None and status not in DOCUMENTED
        if (status is None or guessed) and state == "refused" and maybe:
            # The read said nothing (it failed, no line for the order, a word to guess), nor
            # did the answer: the refusal, in the order's line, may be of a post (or an
            # attempt of this one) that took.
            # Sent again, as after a lost answer, its day counting on.
            why = f"its order's status, {status!r}, is not documented" if guessed else UNREAD
            state, words, unsettled = "queued", f"{words} ({why})", True
            span = _ends(c, now, down)
    if span is not None:
        # Not sent for ever, nor called refused when CCNow may have run it: a person decides.
        return Settled("uncertain", f"{words} (for {span})", status, asked, None)
    return Settled(state, words, status, asked, *_began(c, now, down, unsettled))


MAYBE_TAKEN = "an earlier attempt may have reached CCNow with it"
SHIPPED_DISCOUNT = "CCNow may apply a discount to an order marked shipped"
UNREAD = "its order's status could not be read"


def _began(
    c: cmds.Command, now: float, down: bool, unsettled: bool
) -> tuple[float | None, float | None]:
    """The start of a command's day and of its answers settling nothing, counting this one
    when it settled nothing (a line saying CCNow is down starts no day)."""
    if not unsettled:
        return c.unsettled_since, c.held_since
    return (None if down else day_began(c, now)), held_began(c, now)


def _ends(c: cmds.Command, now: float, down: bool) -> str | None:
    """How long a command left unsettled once more has been so, when that ends it: its three
    days, or its day; None: neither has passed."""
    if now - held_began(c, now) >= HELD_FOR_S:
        return "3 days"
    if not down and now - day_began(c, now) >= UNSETTLED_FOR_S:
        return "a day"
    return None


def log_closed(
    account: str,
    batch: Sequence[cmds.Command],
    closes: Sequence[tuple[int, cmds.State, str]],
    again: Sequence[tuple[int, str, float | None, float | None]],
    retry_in_s: float,
    tally: Tally,
) -> None:
    """Log and count how an answer left each command of a batch: closed, or queued again."""
    by_id = {c.id: c for c in batch}
    for i, state, said in [*closes, *((i, "queued", said) for i, said, _, _ in again)]:
        tally.count(state)
        c = by_id[i]
        about = {"account": account, "order_id": c.order_id, "action": c.action, "command_id": i}
        if state == "queued":
            retry = fields(**about, reason=said, retry_in_s=retry_in_s)
            log.warning("ccnow.action_retry_later", extra=retry)
        else:
            level = {"succeeded": logging.INFO, "uncertain": logging.ERROR}.get(state)
            ended = fields(**about, answer=said)
            log.log(level or logging.WARNING, f"ccnow.action_{state}", extra=ended)


async def make_uncertain(
    store: Store, commands: Sequence[cmds.Command], why: str, *, now: float
) -> None:
    """Close commands `uncertain` (never sent again), each with its `order.action_uncertain`,
    and log each (error, saying why its answer is unknown): a person looks in CCNow's backroom
    and settles it."""
    await close_as(store, [(c, "uncertain", why) for c in commands], now=now)


async def close_as(
    store: Store, closes: Sequence[tuple[cmds.Command, cmds.State, str]], *, now: float
) -> None:
    """Close commands without a post, each with its event, and log each (`uncertain` an
    error, `refused` a warning)."""

    async def events() -> list[Event]:
        # Read in the transaction that closes them: nothing changes their orders meanwhile.
        orders = await store.orders.load(order_of(c) for c, _, _ in closes)
        return [
            event_of(store, c, s, why, now, order := orders.get(order_of(c)), order)
            for c, s, why in closes
        ]

    await cmds.close(store, [(c.id, state, why) for c, state, why in closes], events, now)
    log_each(closes)


def log_each(closes: Sequence[tuple[cmds.Command, cmds.State, str]]) -> None:
    """Log each command closed without a post (`uncertain` an error, `refused` a warning)."""
    for c, state, why in closes:
        about = {"account": c.account, "order_id": c.order_id, "action": c.action}
        level = logging.ERROR if state == "uncertain" else logging.WARNING
        log.log(level, f"ccnow.action_{state}", extra=fields(**about, command_id=c.id, reason=why))
