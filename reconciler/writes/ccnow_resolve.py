"""A person's word on an order's uncertain CCNow actions (`ccnow resolve`, the API's
`POST /ccnow/actions/resolve`).

One word settles one action: an order may hold a ship and an adjust both uncertain, and CCNow's
backroom may show the one taken and not the other. So when the order's uncertain commands are
of several actions and none is named, nothing is settled: `--sent` would mark a discount never
taken sent, `--not-sent` a discount taken not sent (and a second one could then be taken).

`--not-sent --action A` for an order with nothing of A uncertain withdraws its queued commands
of A instead (store/withdraw.py). A withdrawal needs the action named: the same word repeated
(a person unsure it ran, a client retrying after a lost answer) must not withdraw whatever is
queued next once the uncertain command it meant is settled. One of A whose post is out has the
withdrawal recorded, and is returned still `sending`: CCNow's definite answer to that post ends
it as it says, a post ending without one closes it withdrawn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from reconciler.events import action_resolved_event
from reconciler.logs import fields
from reconciler.model import OrderKey
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.withdraw import BY_HAND, withdraw_within
from reconciler.writes.ccnow_form import ACTIONS

# The sender's logger: its lines name the module that sends.
log = logging.getLogger("reconciler.writes.ccnow_actions")

# The words `--action` (and the API's `"action"`) take: the command line's own, and `track`,
# the stored name events and `status` show for `add-tracking`. cli.py spells them out as the
# `--action` choices of `ccnow resolve` (parsing imports no writes module): change both.
RESOLVE_ACTIONS: Final[Mapping[str, cmds.Action]] = {**ACTIONS, "track": "track"}
_WORD: Final[Mapping[str, str]] = {stored: word for word, stored in ACTIONS.items()}


def action_word(action: str) -> str:
    """The command line's word for a stored action (`track` -> `add-tracking`)."""
    return _WORD.get(action, action)


def cli_option(word: str) -> str:
    return f"--action {word}"


Listed = Sequence[tuple[int, str]]  # commands as (id, stored action), oldest first


class NotResolved(Exception):
    """Nothing was settled. `action`: the one asked for (a stored name), None for any;
    `uncertain`: the order's uncertain commands; `queued`: its queued ones, where none is
    uncertain and `--not-sent` named no action (a withdrawal names it)."""

    def __init__(
        self, order_id: str, action: str | None, uncertain: Listed, *, queued: Listed = ()
    ) -> None:
        super().__init__(order_id)
        self.order_id = order_id
        self.action = action
        self.uncertain = list(uncertain)
        self.queued = list(queued)

    @property
    def several(self) -> bool:
        """Refused: the order's uncertain commands are of several actions, and none was
        named."""
        return self.action is None and len({a for _, a in self.uncertain}) > 1

    def listed(self, commands: Listed | None = None) -> str:
        """`ship (#1) and adjust (#2, #3)`: each action's commands (uncertain by default)."""
        of: dict[str, list[str]] = {}
        for i, a in self.uncertain if commands is None else commands:
            of.setdefault(action_word(a), []).append(f"#{i}")
        parts = [f"{word} ({', '.join(ids)})" for word, ids in of.items()]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    def message(self, option: Callable[[str], str] = cli_option) -> str:
        """The refusal, `option` naming how to choose an action (the command line's or the
        API's words); empty when the order has nothing uncertain (the caller words that)."""
        if self.several or (self.queued and not self.uncertain):
            chosen = self.uncertain or self.queued
            words = list(dict.fromkeys(action_word(a) for _, a in chosen))
            choices = " or ".join(f"`{option(w)}`" for w in words)
            if not self.uncertain:
                return (
                    f"{self.order_id} has no uncertain action (nothing settled); not yet sent: "
                    f"{self.listed(chosen)}; to withdraw one, name it: {choices}"
                )
            return (
                f"{self.order_id} has uncertain actions of several kinds, {self.listed()}: "
                f"nothing settled; look in CCNow's backroom for each and settle one at a time "
                f"with {choices}"
            )
        if self.action is not None and self.uncertain:
            return (
                f"{self.order_id} has no uncertain {action_word(self.action)} action; "
                f"uncertain: {self.listed()} (nothing settled)"
            )
        return ""


async def resolve_by_hand(
    store: Store,
    account: str,
    order_id: str,
    sent: bool,
    *,
    now: float,
    action: cmds.Action | None = None,
) -> list[cmds.Command]:
    """Settle an order's uncertain commands of `action` (of its one action when None) by a
    person's word, each with its `order.action_resolved`, and log it; return them. Not sent,
    with none of `action` uncertain (named: never of its one action): withdraw its queued ones
    of `action` so (closed `refused`, with their `order.action_refused`). Raise `NotResolved`
    when none is settled. Those of `action` being sent are returned `sending`, their
    withdrawal recorded (store/withdraw.py)."""
    state: cmds.State = "sent" if sent else "not_sent"
    words = "resolved by hand: " + ("CCNow has it" if sent else "CCNow does not have it")
    found = await _resolve(store, account, order_id, state, words, now, action)
    withdrawing = any(c.state in ("refused", "sending") for c in found)
    sending = {"sending": [c.id for c in found if c.state == "sending"]} if withdrawing else {}
    log.info(
        "ccnow.action_withdrawn" if withdrawing else "ccnow.action_resolved",
        extra=fields(
            account=account,
            order_id=order_id,
            commands=[c.id for c in found if c.state != "sending"],
            state="refused" if withdrawing else state,
            **sending,
        ),
    )
    return found


async def _resolve(
    store: Store,
    account: str,
    order_id: str,
    state: cmds.State,
    answer: str,
    now: float,
    action: cmds.Action | None,
) -> list[cmds.Command]:
    """Close the chosen uncertain commands as `state` (`sent` or `not_sent`), each with its
    `order.action_resolved`, in one transaction; return them as they were (or, withdrawn, as
    they are). Read in the transaction that closes them: two resolves of one order settle it
    once, and a command claimed for a post meanwhile has its withdrawal recorded."""
    async with store.transaction():
        uncertain = await cmds.of_order(store, account, order_id, ["uncertain"])
        found = [c for c in uncertain if action is None or c.action == action]
        refusal = NotResolved(order_id, action, [(c.id, c.action) for c in uncertain])
        if not found and state == "not_sent" and action is not None:
            return await _withdraw(store, account, order_id, action, refusal, now)
        if not found and state == "not_sent":
            # Named, or nothing: a retried word meant for a command settled since must not
            # withdraw the one queued next. The refusal says how to name one.
            queued = await cmds.of_order(store, account, order_id, ["queued"])
            raise NotResolved(order_id, None, [], queued=[(c.id, c.action) for c in queued])
        if not found or refusal.several:
            raise refusal  # before any write: the transaction ends with nothing to undo
        await cmds.close_within(store, [(c.id, state, answer) for c in found], now)
        order = (await store.orders.load([OrderKey("ccnow", account, order_id)])).get(
            OrderKey("ccnow", account, order_id)
        )
        await store.events.add(
            [
                action_resolved_event(
                    store.store_id,
                    c.id,
                    account=c.account,
                    order_id=c.order_id,
                    action=c.action,
                    resolved=state,
                    answer=answer,
                    uncertain_at=c.closed_at,
                    time=now,
                    order=order,
                )
                for c in found
            ]
        )
    return found


async def _withdraw(
    store: Store,
    account: str,
    order_id: str,
    action: cmds.Action,
    refusal: NotResolved,
    now: float,
) -> list[cmds.Command]:
    """Inside `_resolve`'s transaction, withdraw the order's queued commands of `action`, and
    record the withdrawal on those being sent; raise `refusal` when it has none of either."""
    unsent = await cmds.of_order(store, account, order_id, ["queued", "sending"])
    ids = [c.id for c in unsent if c.action == action]
    if not ids:
        raise refusal
    done = await withdraw_within(store, account, [order_id], by=BY_HAND, now=now, ids=ids)
    return done.withdrawn + done.sending
