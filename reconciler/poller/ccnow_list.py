"""What a CCNow coordinator's reads of its account's pending list said (poller/ccnow.py)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from ..config import ScheduleConfig
from ..model import Observation, OrderKey, OrderState, settled_at, unwatched
from ..passes.batcher import Batcher
from ..schedule import doubt_due
from ..store import Store


@dataclass
class ListMemory:
    """What this process's reads of an account's pending list said: the orders the last read
    named, and those that left it since (a read named them, a later one did not) whose query
    has not answered yet; and when the doubted orders were last queried. A new process knows
    none: its start-up catch-up asks every order, doubted ones included."""

    schedule: ScheduleConfig  # the account's
    named: frozenset[str] | None = None  # None: the list was not read yet
    left: set[str] = field(default_factory=set)
    # A catch-up got no answer to the list or to its queries: the first pass whose queries
    # answer asks every open order the list does not name, as the catch-up meant to.
    ask_all: bool = False
    # The orders whose list line is doubted (diff.lags), each with when a pass last queried it
    # for that: a query that fails moves no `last_checked`, and its next is counted from then.
    doubts: dict[str, float] = field(default_factory=dict)
    # Since when each line has named a later word: one its query denies is asked at gaps as
    # long as that has lasted (schedule.doubt_due), not at every min_interval.
    began: dict[str, float] = field(default_factory=dict)

    def doubts_due(
        self,
        doubted: Mapping[str, OrderState],
        now: float,
        *,
        everything: bool,
        forward: Collection[str],
    ) -> list[str]:
        """Return the doubted orders (a pass's, with their rows) to query now: a catch-up's
        (`everything`) every one, a poll's those due (schedule.doubt_due; sooner those whose
        line may be their next step, `forward`: diff.later); note them queried now, and forget
        those no longer doubted."""
        self.doubts = {i: at for i, at in self.doubts.items() if i in doubted}
        # From when its line named a later word (`forward`): a lag's doubt before it does
        # not lengthen the first gaps of a real change the list shows.
        self.began = {i: self.began.get(i, now) if i in forward else now for i in doubted}
        due = [
            i
            for i, s in sorted(doubted.items())
            if everything
            or doubt_due(
                s,
                self.schedule,
                forward=i in forward,
                queried=self.doubts.get(i),
                began=self.began[i],
            )
            <= now
        ]
        self.doubts.update(dict.fromkeys(due, now))
        return due

    def read(self, named: Collection[str]) -> None:
        """Note a read of the list: what the read before named and this one does not left it,
        whatever the status word it was listed with."""
        now = frozenset(named)
        if self.named is not None:
            self.left |= self.named - now
        self.left -= now
        self.named = now

    def take(self) -> set[str]:
        """Return the orders that left the list, to be queried now, and forget them."""
        taken, self.left = self.left, set()
        return taken

    def queried(self, taken: Iterable[str], answered: Collection[str]) -> None:
        """Note a pass's queries: an order that answered, even with its own failure, has its
        own rhythm from now on; one `taken` that got no answer (the account failed) waits for
        the next pass that queries."""
        self.left -= set(answered)
        named = self.named or frozenset()
        self.left.update(i for i in taken if i not in answered and i not in named)


async def undecided(
    lines: Mapping[str, Observation], asked: Collection[str], seen: set[str], into: Batcher
) -> int:
    """Apply the pending list's `lines` of doubted orders held before `pending` (diff.next_step:
    pending is their likely next step) whose query was `asked` without an answer (not `seen`),
    as no longer doubted: their query cannot decide, and held back they never changed. Return
    how many: the list's checks, never a query's answer (while every query fails, one would
    say the queries answer again: a false `source.recovered`)."""
    taken = [o for i, o in sorted(lines.items()) if i in asked and i not in seen]
    for obs in taken:
        await into.add(obs._replace(listed=False))
    if taken:
        await into.flush()
        seen.update(o.key.order_id for o in taken)
    return len(taken)


async def still_open(store: Store, account: str, order_ids: Collection[str]) -> list[str]:
    """Return those of the account's CCNow orders that are still followed and open (untracked,
    or ended meanwhile, they are asked nothing)."""
    keys = [OrderKey("ccnow", account, i) for i in sorted(order_ids)]
    states = await store.orders.load(keys) if keys else {}
    return [k.order_id for k in keys if k in states and not states[k].end_state]


def followed(state: OrderState | None, settled_since: float) -> bool:
    """Whether an order is still followed and may be asked again: tracked, not ended, and
    not settled past its watch (`model.unwatched`)."""
    if state is None or state.end_state:
        return False
    changed = settled_at(state.last_changed, state.tracked_at)
    return not unwatched("ccnow", state.status, changed, settled_since=settled_since)
