"""CCNow order actions: how each command ends (refused without asking CCNow, closed by its
answer), and what a run did."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.events import action_event
from reconciler.logs import fields
from reconciler.model import OrderKey
from reconciler.sources.ccnow_answer import Answer, OrderLine
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_form import local_refusal

# The sender's logger: its lines name the module that sends.
log = logging.getLogger("reconciler.writes.ccnow_actions")

# How long after CCNow's first answer that did not settle its order (no line for it, a whole
# post refused in words of no field) a command is sent again; then it ends.
UNSETTLED_FOR_S = 86400.0

# What CCNow answers when the action took: the queue state it put the order in, or (for an
# order the lifecycle moved on quickly) where that queue leads.
TAKEN = {"ship": ("mark_shipped", "completed"), "cancel": ("mark_canceled", "canceled")}


def took(action: str, status: str) -> bool:
    """Whether an order's status says a ship or cancel took (CCNow's words in another case,
    `MARK_SHIPPED`, were read as the documented word)."""
    return status in TAKEN.get(action, ())


Refusals = list[tuple[cmds.NewCommand, str]]


async def sort_out(
    store: Store, fresh: Sequence[cmds.NewCommand]
) -> tuple[list[cmds.NewCommand], Refusals, Refusals]:
    """Split new commands, by what the store knows, into those to send, those refused without
    asking CCNow (the order is past pending) and discounts that wait for an uncertain one."""
    states = await store.orders.load(OrderKey("ccnow", c.account, c.order_id) for c in fresh)
    wanted: list[cmds.NewCommand] = []
    past_pending: Refusals = []
    waiting: Refusals = []
    for c in fresh:
        why = local_refusal(states.get(OrderKey("ccnow", c.account, c.order_id)))
        if why is not None:
            past_pending.append((c, why))
        elif c.action == "adjust" and (wait := await _uncertain_adjust(store, c)) is not None:
            waiting.append((c, wait))
        else:
            wanted.append(c)
    return wanted, past_pending, waiting


async def _uncertain_adjust(store: Store, c: cmds.NewCommand) -> str | None:
    """Why a new discount waits: an earlier one of the order is uncertain, and both taken
    would discount twice (and `resolve` would settle them as one)."""
    earlier = await cmds.of_order(store, c.account, c.order_id, "uncertain")
    adjust = next((e for e in earlier if e.action == "adjust"), None)
    if adjust is None:
        return None
    return (
        f"an earlier discount of this order (#{adjust.id}) is uncertain: settle it with "
        f"`reconciler ccnow resolve {c.order_id} --sent|--not-sent` first"
    )


@dataclass
class Tally:
    """What one run did: commands posted, and how those it touched ended."""

    sent: int = 0
    done: int = 0
    refused: int = 0
    uncertain: int = 0
    queued: int = 0

    def line(self) -> str:
        """Return the summary line of a run."""
        return (
            f"sent {self.sent}, done {self.done}, refused {self.refused}, "
            f"uncertain {self.uncertain}, queued {self.queued}"
        )

    def count(self, state: str) -> None:
        """Count one command by the state it is in after the run."""
        if state in ("succeeded", "sent"):
            self.done += 1
        elif state in ("refused", "not_sent"):
            self.refused += 1
        elif state == "uncertain":
            self.uncertain += 1
        else:
            self.queued += 1


@dataclass(frozen=True)
class Taken:
    """What became of the commands of one request."""

    rows: list[cmds.Command]
    earlier: set[int]  # ids of commands their key had made before
    # Refused here and not recorded: a discount waiting for an uncertain one to be settled.
    refused: list[tuple[cmds.NewCommand, str]]
    sent: int

    def tally(self) -> Tally:
        """Count the request's commands by where they ended."""
        tally = Tally(sent=self.sent, refused=len(self.refused))
        for c in self.rows:
            tally.count(c.state)
        return tally

    def to_json(self) -> list[dict[str, object]]:
        """One object per order; a discount that waits for an uncertain one has `id` null."""
        out = [command_json(c, earlier=c.id in self.earlier) for c in self.rows]
        out += [
            {
                "id": None,
                "account": c.account,
                "order_id": c.order_id,
                "action": c.action,
                "state": "refused",
                "outcome": "refused",
                "answer": why,
                "sent": False,
            }
            for c, why in self.refused
        ]
        return out


# A command's state in DESIGN.md's words, as the API shows it (`state`): `sent` is a post on
# its way (the command line's summary counts it with the queued ones). `outcome` keeps the
# command's own word (a `sent` or `not_sent` there is a person's `ccnow resolve`).
API_STATE: dict[str, str] = {
    "queued": "queued",
    "sending": "sent",
    "succeeded": "done",
    "sent": "done",
    "refused": "refused",
    "not_sent": "refused",
    "uncertain": "uncertain",
}


def command_json(c: cmds.Command, *, earlier: bool = False) -> dict[str, object]:
    """Return a command as the API shows it."""
    return {
        "id": c.id,
        "account": c.account,
        "order_id": c.order_id,
        "action": c.action,
        "key": c.key,
        "state": API_STATE[c.state],
        "outcome": c.state,
        "answer": c.answer,
        "attempts": c.attempts,
        "notes": c.notes,
        "amount": c.amount,
        "trackname": c.trackname,
        "tracknumber": c.tracknumber,
        "made_before": earlier,
    }


def lines_by_id(answer: Answer) -> dict[str, OrderLine | None]:
    """Return the answer line per order id; None for an id whose lines disagree."""
    lines: dict[str, OrderLine | None] = {}
    for line in answer.orders:
        previous = lines.get(line.order_id, line)
        lines[line.order_id] = line if previous == line else None
    return lines


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


def outcome(c: cmds.Command, line: OrderLine | None) -> tuple[cmds.State, str]:
    """Return how CCNow's answer line for a command's order closes it, and the words kept:
    `queued` again when the answer does not settle the order (sent again later)."""
    if line is None:
        # No line, or lines that disagree (`message no_pending_orders`, only other orders'
        # lines): nothing says CCNow did not run it. An adjust may have been applied and would
        # discount twice if sent again: it waits for a person. The others are safe to send
        # again, as after a lost answer: a ship or cancel that took is then refused as not
        # pending and found taken by the status check; a tracking upload is sent once more.
        return ("uncertain" if c.action == "adjust" else "queued"), NO_LINE
    if line.status is None:
        return "refused", line.error or "error"
    taken = TAKEN.get(c.action)
    if taken is not None and not took(c.action, line.status):
        return "refused", f"answered {line.status}, not {taken[0]}"
    return "succeeded", line.status


async def end_after_a_day(
    store: Store, batch: Sequence[cmds.Command], why: str, now: float
) -> tuple[list[cmds.Command], list[cmds.State]]:
    """End the commands of a post refused as a whole (RefusedAsAWhole) whose answers have not
    settled them for a day: `refused` with CCNow's words if no post of them may have been
    applied, else `uncertain`; return the others, and the states of those ended."""
    ended = [c for c in batch if now - (c.unsettled_since or now) >= UNSETTLED_FOR_S]
    words = f"{why} (for a day)"
    if refused := [(c, words) for c in ended if c.maybe_reached_at is None]:
        await refuse(store, refused, now=now)
    if uncertain := [c for c in ended if c.maybe_reached_at is not None]:
        await make_uncertain(store, uncertain, words, now=now)
    states: list[cmds.State] = [
        "refused" if c.maybe_reached_at is None else "uncertain" for c in ended
    ]
    return [c for c in batch if c not in ended], states


async def make_uncertain(
    store: Store, commands: Sequence[cmds.Command], why: str, *, now: float
) -> None:
    """Close commands `uncertain` (never sent again), each with its `order.action_uncertain`,
    and log each (error): a person looks in CCNow's backroom and settles it."""
    await _close_each(store, [(c, why) for c in commands], "uncertain", now=now)


async def refuse(store: Store, refusals: Sequence[tuple[cmds.Command, str]], *, now: float) -> None:
    """Close commands `refused` with CCNow's words, each with its `order.action_refused`,
    and log each (warning)."""
    await _close_each(store, refusals, "refused", now=now)


async def _close_each(
    store: Store, closes: Sequence[tuple[cmds.Command, str]], state: cmds.State, *, now: float
) -> None:
    events = [
        action_event(
            store.store_id,
            c.id,
            state,
            account=c.account,
            order_id=c.order_id,
            action=c.action,
            answer=why,
            time=now,
        )
        for c, why in closes
    ]
    await cmds.close(store, [(c.id, state, why) for c, why in closes], events, now)
    # An uncertain one says why its answer is unknown; a refused one, CCNow's answer.
    uncertain = state == "uncertain"
    level, word = (logging.ERROR, "reason") if uncertain else (logging.WARNING, "answer")
    for c, why in closes:
        about = {"account": c.account, "order_id": c.order_id, "action": c.action}
        log.log(
            level, f"ccnow.action_{state}", extra=fields(**about, command_id=c.id, **{word: why})
        )


async def resolve_by_hand(
    store: Store, account: str, order_id: str, sent: bool, *, now: float
) -> list[cmds.Command]:
    """Settle an order's uncertain commands by a person's word, each with its
    `order.action_resolved`, and log it; return them."""
    state: cmds.State = "sent" if sent else "not_sent"
    words = "resolved by hand: " + ("CCNow has it" if sent else "CCNow does not have it")
    found = await cmds.resolve(store, account, order_id, state, words, now)
    if found:
        log.info(
            "ccnow.action_resolved",
            extra=fields(
                account=account, order_id=order_id, commands=[c.id for c in found], state=state
            ),
        )
    return found
