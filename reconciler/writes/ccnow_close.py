"""Closing a post's CCNow commands by its answer: each by its order's line (applied to the
snapshot in the transaction that closes it), by CCNow's refusal of the whole post, or, of an
answer lost after whole lines for some orders, those by their lines and the rest queued again.
A mixin of `ccnow_actions.ActionSender`, which sends the posts."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import aiohttp

from reconciler.config import CCNowConfig
from reconciler.events import Event
from reconciler.model import Observation, OrderKey, OrderState, Outcome
from reconciler.reconcile import Reconciler
from reconciler.sources.ccnow_answer import OrderLine
from reconciler.sources.http import Gates
from reconciler.sources.rest import AccountRest
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.requeue import requeue_within
from reconciler.store.withdraw import by_untrack
from reconciler.taken import unconfirmed_event, unheld
from reconciler.writes.ccnow_events import event_of, order_of
from reconciler.writes.ccnow_fields import names_own_field
from reconciler.writes.ccnow_outcome import (
    NO_LINE,
    as_reached,
    lines_by_id,
    log_closed,
    make_uncertain,
    outcome,
    retry_delay,
    says_down_for,
    settle,
)
from reconciler.writes.ccnow_reads import StatusReads
from reconciler.writes.ccnow_requeue import hidden_reached, not_before, requeue
from reconciler.writes.ccnow_send import Lost
from reconciler.writes.ccnow_taken import Tally
from reconciler.writes.in_flight import InFlight

__all__ = ("Closing",)


class Closing:
    """Closes commands by CCNow's answers; the sender's parts it uses are set by it."""

    store: Store
    session: aiohttp.ClientSession
    gates: Gates
    rests: Mapping[str, AccountRest]  # the accounts' (their coordinators'): reads wait for it
    reconciler: Reconciler
    in_flight: InFlight
    secrets: Sequence[str]
    clock: Callable[[], float]
    on_commit: Callable[[], None]

    async def _close_in_part(
        self, cfg: CCNowConfig, batch: list[cmds.Command], exc: Lost, tally: Tally, *, once: bool
    ) -> None:
        """Close a post whose answer was lost after whole lines for some of its orders (cut
        short, an error line beside them): those lines close their commands as in a whole
        answer; the others are posted again at once (not before its Retry-After), as the retry
        within the post would have, without the commands CCNow said it took. Whether CCNow
        took them cannot be known: a ship or cancel sent again is found taken by its order's
        status; a tracking upload may be added twice (CCNow may show it twice: it costs
        nothing, unlike a discount, which is never posted again: `uncertain`, `once`)."""
        assert exc.in_part is not None
        answer, asked, before, tried, hidden = exc.in_part
        lines = lines_by_id(answer)
        said = [c for c in batch if lines.get(c.order_id) is not None]
        if said:
            said = as_reached(said, self.clock()) if before else said
            await self._close(
                cfg, said, lines, tally, asked, wait=exc.wait, tried=tried, hidden=hidden
            )
        rest = [c for c in batch if lines.get(c.order_id) is None]
        if rest and once:
            await make_uncertain(self.store, rest, str(exc), now=self.clock())
            self.on_commit()
            tally.uncertain += len(rest)
        elif rest:
            at, why, now = not_before(exc.wait), str(exc), self.clock()
            await requeue(self.store, now, cfg, rest, why, tally, lost=True, delay=at)

    async def _close(
        self,
        cfg: CCNowConfig,
        batch: list[cmds.Command],
        lines: dict[str, OrderLine | None],
        tally: Tally,
        asked: float | None,
        refusal: str | None = None,
        down: bool = False,
        reached_before: bool = False,
        wait: float | None = None,
        refused: Mapping[int, str] | None = None,
        no_line: str = NO_LINE,
        tried: bool = False,
        hidden: bool = False,
    ) -> None:
        """Close a batch by CCNow's answer lines, or by a `refusal` of the whole post in words
        naming no field of its commands (which settles none of them; `down`: saying CCNow is
        down), or by `refused`'s words (command id -> a line naming its field); `no_line`: the
        words kept for a command whose order has no line; `reached_before`: an earlier attempt
        of the post may have reached CCNow; `tried`: one was made (a ship or cancel refused
        as not pending is then read first); `hidden`: one's answer may hide that CCNow ran it
        (a tracking upload refused in its line is then `uncertain`); `wait`: its answer's
        Retry-After (seconds), which those left queued wait, as they wait one their status
        reads were asked."""
        # When the answer came (the wall clock, as the post's `asked`): its lines are dated by
        # it, and a read sent before it says nothing newer unless past them (diff.stale).
        answered = time.time()
        closes: list[tuple[int, cmds.State, str]] = []
        again: list[tuple[int, str, float | None, float | None]] = []
        observations: list[Observation] = []
        rest = self.rests.get(cfg.name)
        reads = StatusReads(self.session, cfg, self.gates, self.in_flight, self.secrets, rest)
        for c in batch:
            line = lines.get(c.order_id)
            said: tuple[cmds.State, str] = (
                ("queued", refusal) if refusal else outcome(c, line, no_line)
            )
            if refused is not None:
                said = ("refused", refused[c.id])
            status = line.status if line is not None else None
            # Its own line saying CCNow is down decides nothing, as a whole post's does.
            own = refusal is None and says_down_for(line)
            whole, named = refusal is not None or own, refused is not None
            # A tracking upload's line naming its own field refuses it as a whole post's line
            # does (the attempt before carried the same field); a ship's or cancel's status is
            # read as before.
            named = named or (c.action == "track" and names_own_field(c, said[1]))
            state, words, status, when, since, held = await settle(
                *(c, *said, status, asked),
                whole=whole,
                now=self.clock(),
                read=partial(reads.read, c.order_id),
                down=down or own,
                named=named,
                tried=tried,
                hidden=hidden,
            )
            if state == "queued":
                again.append((c.id, words, since, held))
            else:
                closes.append((c.id, state, words))
            if status is not None:
                key = OrderKey("ccnow", cfg.name, c.order_id)
                # A status read after the answer is a check as any other, dated by its query.
                came = answered if asked is not None and when == asked else None
                observations.append(
                    Observation(key, Outcome.OK, status=status, asked=when, answered=came)
                )
        # For those the answer did not settle: not before a Retry-After asks.
        delay = retry_delay(batch, max(wait or 0.0, reads.wait or 0.0))
        # An answer without the order's line came from CCNow: the post may have run it; so
        # may an earlier attempt whose answer was lost.
        # So may one whose answer may hide that it ran (a proxy's 503): a tracking upload
        # keeps it (`hidden_reached`), though CCNow's words turned this one away.
        every = refusal is None or reached_before
        marked = {c.id for c in batch} if every else hidden_reached(batch) if hidden else set()
        withdrawn = await self._commit(
            batch, closes, again, observations, self.clock() + delay, marked, tally, hidden
        )
        # Those withdrawn while their post was out are closed where they would be queued.
        closes += [(c.id, c.state, c.answer or "") for c in withdrawn]
        again = [row for row in again if row[0] not in {c.id for c in withdrawn}]
        log_closed(cfg.name, batch, closes, again, delay, tally)

    async def _commit(
        self,
        batch: list[cmds.Command],
        closes: list[tuple[int, cmds.State, str]],
        again: list[tuple[int, str, float | None, float | None]],
        observations: list[Observation],
        retry_at: float,
        reached: set[int],
        tally: Tally,
        hidden: bool,
    ) -> list[cmds.Command]:
        """Commit a post's outcome; return those closed withdrawn (store/withdraw.py), which
        keep that it may have reached CCNow when `hidden` (an attempt's answer may hide that
        CCNow ran it), whatever their action."""
        now = self.clock()
        by_id = {c.id: c for c in batch}
        withdrawn: list[cmds.Command] = []

        async def within(rows: Mapping[OrderKey, OrderState], written: float) -> list[Event]:
            # Closed at the write's time (the `last_checked` of the rows its answers set), not
            # before the sender's clock: a read applied later is after the close, whatever the
            # wall clock did since the answer came (taken.contradicted).
            closed = max(now, written)
            await cmds.close_within(self.store, closes, closed)
            # Those the post may have reached CCNow with keep it (the first such post's time).
            kept = [row for row in again if row[0] not in reached]
            hidden_at = now if hidden else None
            withdrawn[:] = await requeue_within(
                self.store, kept, next_attempt_at=retry_at, now=closed, hidden_at=hidden_at
            )
            marked = [row for row in again if row[0] in reached]
            withdrawn.extend(
                await requeue_within(
                    self.store, marked, next_attempt_at=retry_at, now=closed, reached_at=now
                )
            )
            # The rows now (the answer's statuses applied); before: as `apply` found those it
            # applied an answer to (an order not followed then had none), others as they are.
            after = await self.store.orders.load(order_of(by_id[i]) for i, _, _ in closes)
            answered = {o.key for o in observations}
            events = []
            for i, state, words in closes:
                key = order_of(c := by_id[i])
                before = rows.get(key) if key in answered else after.get(key)
                events.append(event_of(self.store, c, state, words, closed, before, after.get(key)))
                if state == "succeeded" and unheld(c, after.get(key)):
                    # A read sent after the answer came, committed first, said the order before
                    # the action: named now, as a read moving it back later would be, and in
                    # the reply to the request that sent it (Taken.unconfirmed).
                    tally.unconfirmed.add(c.id)
                    store_id = self.store.store_id
                    events.append(
                        unconfirmed_event(
                            *(store_id, c),
                            closed_at=closed,
                            before=before,
                            after=after.get(key),
                            now=closed,
                            via="action",
                        )
                    )
            return events

        async def untracked() -> set[OrderKey]:
            # Untracked while the post was out: its answer does not follow the order again.
            current = await cmds.get(self.store, list(by_id))
            return {order_of(c) for c in current if by_untrack(c.withdraw_asked)}

        await self.reconciler.apply(
            observations, via="action", discover=True, within=within, withheld=untracked
        )
        return withdrawn
