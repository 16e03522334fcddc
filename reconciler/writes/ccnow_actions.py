"""CCNow order actions (ship, cancel, track, adjust) as durable commands.

Every command is committed before anything is sent; CCNow's answer line for its order is
applied to the snapshot in the transaction that closes it (`pending -> mark_shipped`, with
`via: "action"`). An `error_message` line naming a command's field (`x_amount_1 exceeds order
total`) refuses that command. Any other answer that does not settle a command (a post refused
in words naming no field of it, no line for its order) leaves it queued, sent alone from then
on, whatever the words; after a day of only such answers (three days, with lines saying CCNow
is down between them) a ship or cancel whose order's status shows it took is done, any other
is `uncertain` for a person, never `refused`. An answer lost
or that may have come after CCNow ran the post sends `ship`, `cancel` and `track` again; an
`adjust` never is (it would discount twice): it becomes `uncertain`, with
`order.action_uncertain`, for `reconciler ccnow resolve`.

`ccnow_form.py` checks a request and builds the post (pure), `ccnow_post.py` posts one batch
and tells how it failed, `ccnow_outcome.py` says how a command ends, `ccnow_close.py` closes a
post's commands by its answer; re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import aiohttp

from reconciler.config import CCNowConfig
from reconciler.logs import fields
from reconciler.reconcile import Reconciler
from reconciler.sources.errors import SourceError
from reconciler.sources.http import Gates
from reconciler.sources.rest import AccountRest
from reconciler.store import Store, taken
from reconciler.store import commands as cmds
from reconciler.store.requeue import unclaim
from reconciler.store.withdraw import asked
from reconciler.taken import unconfirmed_ids
from reconciler.writes.ccnow_close import Closing
from reconciler.writes.ccnow_form import (
    ACTIONS,
    MAX_NOTES,
    MAX_TRACK_FIELD,
    PASSWORD_MASK,
    PAST_PENDING,
    BadAction,
    batches,
    build,
    derived_key,
    dry_run_text,
    form,
    from_document,
    local_refusal,
    parse_amount,
)
from reconciler.writes.ccnow_keys import made_before
from reconciler.writes.ccnow_outcome import (
    NO_LINE,
    UNSETTLED_FOR_S,
    as_reached,
    lines_by_id,
    make_uncertain,
    outcome,
    sort_out,
)
from reconciler.writes.ccnow_post import Lost, Refused, TurnedAway, post_batch
from reconciler.writes.ccnow_requeue import naming, not_before, requeue
from reconciler.writes.ccnow_resolve import resolve_by_hand
from reconciler.writes.ccnow_taken import Taken, Tally, command_json
from reconciler.writes.ccnow_turn import refuse_past_pending, refuse_second
from reconciler.writes.failpoint import failpoint
from reconciler.writes.in_flight import Cut, InFlight, Stopping
from reconciler.writes.once import NotSent

__all__ = (
    "ACTIONS",
    "MAX_NOTES",
    "MAX_TRACK_FIELD",
    "PASSWORD_MASK",
    "PAST_PENDING",
    "UNSETTLED_FOR_S",
    "ActionSender",
    "BadAction",
    "Lost",
    "NotSent",
    "Taken",
    "Tally",
    "batches",
    "build",
    "command_json",
    "derived_key",
    "dry_run_text",
    "form",
    "from_document",
    "local_refusal",
    "outcome",
    "parse_amount",
    "sort_out",
)

log = logging.getLogger("reconciler.writes.ccnow_actions")

# --- sending ----------------------------------------------------------------------------------


class ActionSender(Closing):
    """Sends queued CCNow commands and closes them with CCNow's answers; one per writer."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        reconciler: Reconciler,
        accounts: Sequence[CCNowConfig],
        *,
        gates: Gates,
        rests: Mapping[str, AccountRest] | None = None,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        in_flight: InFlight | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.secrets = secrets  # the config's: never taken from CCNow's answers for a status
        self.session = session
        self.gates = gates  # the accounts' bounds, shared with their queries
        self.rests = rests or {}  # the accounts' rests at CCNow's word, as their queries'
        self.reconciler = reconciler
        self.accounts = {c.name: c for c in accounts}
        self.on_commit = on_commit
        self.clock = clock
        self.in_flight = in_flight or InFlight()
        self._recording = asyncio.Lock()
        # The commands a request (`take`) recorded, each with that request's mark, until it
        # ends: it sends them itself. Claimed by another sender meanwhile (the daemon's tick,
        # another request), one would be answered `sending` for that one's post, not with its
        # outcome, which the request's caller waits for.
        self._taken: dict[int, object] = {}

    async def take(self, new: Sequence[cmds.NewCommand]) -> Taken:
        """Record new commands (those past pending closed `refused` at once, keys given before
        returning their command) and send them at once, with whatever else is due."""
        # Looked up and recorded under one lock: a request giving `K` for an order and one
        # giving `K` for it among others (`K/ORDER`) at once would each find neither form.
        async with self._recording:
            known = await made_before(self.store, new)
            fresh = [c for c in new if c not in known]
            wanted, past_pending, waiting = await sort_out(self.store, fresh, list(self.accounts))
            # Refused for good (the order is past pending): a command like one CCNow refused,
            # so that its key answers the same refusal again and alerting sees its event. A
            # discount that waits is not recorded: once the earlier one is settled, the same
            # request (its key) is to be sent, not answered with this refusal.
            closed = await cmds.record_refused(self.store, past_pending, self.clock())
            if any(made_now for _c, made_now in closed):
                self.on_commit()
            recorded = await cmds.record(self.store, wanted, self.clock())
            # Under the lock that `send_due` reads the due commands under: none sees these
            # before they are the request's.
            mine, own = object(), [c.id for c, made_now in recorded if made_now]
            self._taken.update(dict.fromkeys(own, mine))
        try:
            failpoint("ccnow.recorded")
            earlier = {c.id for c in known.values()}
            # A key another request made meanwhile (the daemon takes requests concurrently).
            earlier |= {c.id for c, made_now in [*closed, *recorded] if not made_now}
            ids = [c.id for c in known.values()] + [c.id for c, _new in [*closed, *recorded]]
            tally = Tally()
            # One made before is sent only when due: a repeat of a request turned away with a
            # Retry-After (a maintenance, a refusal in words naming no field) posted it at once.
            rows, now = await cmds.get(self.store, ids), self.clock()
            due = [c for c in rows if c.id in own or cmds.is_due(c, now)]
            await self.send(self._sendable(due, mine), tally)
            # It may post one of these, held until an older one ended.
            await self.send_due(tally, mine=mine)
            cut = False
        except Cut:
            # Cut off at the stop's bound: its caller is told where the commands stand, not
            # left with a connection closed unanswered (a retry would post them again).
            cut = True
        finally:
            for i in own:
                del self._taken[i]
        rows = await cmds.get(self.store, ids)
        held = {} if cut else await cmds.ahead(self.store, [c for c in rows if c.state == "queued"])
        # Also one an earlier request sent (the same key again), or whose later read said so.
        doubted = tally.unconfirmed & set(ids) | await self.unconfirmed(rows)
        sent = len(tally.posted & set(ids))
        return Taken(rows, earlier, waiting, sent, held, cut, frozenset(doubted))

    def _sendable(self, commands: Sequence[cmds.Command], mine: object) -> list[cmds.Command]:
        """The commands no other request than `mine` (None: any) recorded and sends itself."""
        return [c for c in commands if self._taken.get(c.id, mine) is mine]

    async def command(self, command_id: int) -> cmds.Command | None:
        """Return one command by id."""
        return next(iter(await self.commands([command_id])), None)

    async def commands(self, ids: Sequence[int]) -> list[cmds.Command]:
        """Return commands by id, as they stand now."""
        return await cmds.get(self.store, ids)

    async def unconfirmed(self, commands: Sequence[cmds.Command]) -> set[int]:
        """Return the ids of those of `commands` an `order.action_unconfirmed` names."""
        return await taken.named(self.store, unconfirmed_ids(self.store.store_id, commands))

    async def send_due(self, tally: Tally | None = None, *, mine: object = None) -> Tally:
        """Send every queued command whose attempt is due, but those a request under way
        recorded (but `mine`'s own): it sends them and answers their outcome."""
        tally = tally or Tally()
        async with self._recording:
            due = self._sendable(await cmds.due(self.store, self.clock()), mine)
        await self.send(due, tally)
        return tally

    async def send(self, commands: Sequence[cmds.Command], tally: Tally) -> None:
        """Send queued commands (due or not), batched per account, each after the older ones
        of its order (one queued or sending holds it back; a discount behind an uncertain one
        is refused: CCNow may have applied that one); count where they end."""
        waiting = [c for c in commands if c.state == "queued" and c.account in self.accounts]
        while waiting:
            ahead = await cmds.ahead(self.store, waiting)
            first = [c for c in waiting if c.id not in ahead]
            # Checked again at its turn: an older command's answer may have put its order past
            # pending since it was recorded.
            now = await refuse_past_pending(self.store, first, tally, now=self.clock())
            if len(now) < len(first):
                self.on_commit()
            if await refuse_second(
                self.store, waiting, ahead, tally, accounts=list(self.accounts), now=self.clock()
            ):
                self.on_commit()
            elif not first:
                return
            await self._send_first(tally, now)
            later = [c.id for c in waiting if c.id in ahead]
            waiting = [c for c in await cmds.get(self.store, later) if c.state == "queued"]

    async def _send_first(self, tally: Tally, commands: Sequence[cmds.Command]) -> None:
        by_account: dict[str, list[cmds.Command]] = {}
        for c in commands:
            by_account.setdefault(c.account, []).append(c)
        for account, items in by_account.items():
            cfg = self.accounts[account]
            # One whose last answer did not settle it goes alone: a post one bad command makes
            # CCNow refuse as a whole must not hold the others back (nor end them a day later).
            alone = [[c] for c in items if c.unsettled_since is not None]
            together = [c for c in items if c.unsettled_since is None]
            for batch in alone + batches(together, cfg.batch_size):
                with contextlib.suppress(Stopping):  # not sent: queued for the next start
                    await self.in_flight.run(self._send_batch(cfg, batch, tally))

    async def _send_batch(self, cfg: CCNowConfig, batch: list[cmds.Command], tally: Tally) -> None:
        claimed = set(await cmds.mark_sending(self.store, [c.id for c in batch]))
        batch = [c for c in batch if c.id in claimed]
        if not batch:
            return
        failpoint("ccnow.sending")
        once, gate = batch[0].action == "adjust", self.gates.of(cfg)
        try:
            posted = await post_batch(
                *(self.session, cfg, batch),
                once=once,
                gate=gate,
                halt=self.in_flight.halt,
                secrets=self.secrets,
                withdrawn=partial(asked, self.store, [c.id for c in batch]),
            )
        except asyncio.CancelledError:
            # Cut at the stop's bound (in_flight.Cut) with its post out: it left, and CCNow may
            # have run it (it stays `sending`), so it counts as sent.
            if self.in_flight.halt.went_out():
                tally.post(batch)
            raise
        except Stopping:
            # Not posted: as it was before this claim, due for the next start.
            closed = await unclaim(self.store, [c.id for c in batch], now=self.clock())
            tally.queued += len(batch) - len(closed)
            tally.refused += len(closed)
            raise
        except NotSent as exc:
            # The connection was never made: queued again (one withdrawn meanwhile closed as
            # withdrawn before it was sent), and not counted as sent.
            await requeue(self.store, self.clock(), cfg, batch, str(exc), tally, sent=False)
            return
        except Lost as exc:
            tally.post(batch)
            if exc.seen is not None:  # no CCNow answer: what came, for whoever looks into it
                seen = fields(account=cfg.name, **naming(batch), **exc.seen)
                log.warning("ccnow.answer_unreadable", extra=seen)
            if exc.in_part is not None:  # whole lines for some orders came before it was lost
                await self._close_in_part(cfg, batch, exc, tally, once=once)
                return
            if once:
                await self._make_uncertain(batch, str(exc))
                tally.uncertain += len(batch)
                return
            await requeue(
                self.store, self.clock(), cfg, batch, str(exc), tally, lost=True, wait=exc.wait
            )
            return
        except Refused as exc:
            # Nothing of the post was applied (by this attempt: an earlier one's answer may
            # have been lost). A line naming a command's field refuses it: the same command
            # would be refused again; a ship or cancel an earlier attempt may have taken is
            # refused once its order's status does not show it took.
            tally.post(batch)
            batch = as_reached(batch, self.clock()) if exc.reached_before else batch
            if named := [c for c in batch if c.id in exc.words]:
                refused, tried = {c.id: exc.words[c.id] for c in named}, exc.tried_before
                await self._close(cfg, named, {}, tally, None, refused=refused, tried=tried)
            rest = [c for c in batch if c.id not in exc.words]
            before, wait = exc.reached_before, exc.wait  # none posted before its Retry-After
            hidden = exc.hidden_before  # a tracking upload left queued keeps it (requeue)
            if rest and exc.whole is not None:
                # Words naming none of their fields decide nothing: sent again (alone, unless
                # they say CCNow is down: no day then, but a bound all the same).
                refusal, down = exc.whole, exc.down
                await self._close(
                    cfg, rest, {}, tally, None, refusal, down, before, wait, hidden=hidden
                )
                return
            # Every line names a field. One saying CCNow is down decides nothing for the
            # commands it names; the others, turned away with them, go again at once (without
            # them, not due yet): one command CCNow cannot take now holds no other back.
            for line in dict.fromkeys(exc.held.values()):
                if held := [c for c in rest if exc.held.get(c.id) == line]:
                    await self._close(
                        cfg, held, {}, tally, None, line, True, before, wait, hidden=hidden
                    )
            if others := [c for c in rest if c.id not in exc.held]:
                why = f"the post was refused for another command: {exc}"
                # Not before the answer's Retry-After, when it asks one (a 429's).
                at = not_before(wait)
                await requeue(
                    *(self.store, self.clock(), cfg, others, why, tally),
                    lost=before,
                    delay=at,
                    hidden=hidden,
                )
            return
        except SourceError as exc:
            if isinstance(exc, TurnedAway) and exc.too_large is not None:
                await self._split(cfg, batch, exc.too_large, tally)
                return
            # Turned away before it ran (a rate limit, a login wall, a wrong url): not posted
            # again before its Retry-After asks.
            wait = exc.wait if isinstance(exc, TurnedAway) else None
            # A tracking upload an attempt's answer may hide CCNow ran keeps that it may have.
            hidden = isinstance(exc, TurnedAway) and exc.hidden
            if hidden or not isinstance(exc, TurnedAway):
                tally.post(batch)  # not counted sent where surely no attempt reached CCNow
            turned = exc.turned if isinstance(exc, TurnedAway) and not hidden else None
            await requeue(
                *(self.store, self.clock(), cfg, batch, str(exc), tally),
                wait=wait,
                hidden=hidden,
                turned=turned,
            )
            return
        tally.post(batch)
        failpoint("ccnow.answered")
        batch = as_reached(batch, self.clock()) if posted.reached_before else batch
        lines = lines_by_id(posted.answer)
        no_line = NO_LINE if posted.said is None else f"{NO_LINE}: {posted.said}"
        tried, hidden = posted.tried_before, posted.hidden_before
        await self._close(
            cfg, batch, lines, tally, posted.asked, no_line=no_line, tried=tried, hidden=hidden
        )

    async def _split(
        self, cfg: CCNowConfig, batch: list[cmds.Command], why: str, tally: Tally
    ) -> None:
        """A post turned away by a bound on its size (413, 414: a proxy's, a web server's),
        which would turn it away for ever: sent again in halves, down to one order; one
        order's alone is refused, with why (not counted sent: its halves are)."""
        if len(batch) > 1:
            await unclaim(self.store, [c.id for c in batch], now=self.clock())  # not run
            half = len(batch) // 2
            for part in (batch[:half], batch[half:]):
                await self._send_batch(cfg, part, tally)
            return
        tally.post(batch)
        await self._close(cfg, batch, {}, tally, None, refused={batch[0].id: why})

    async def _make_uncertain(self, commands: Sequence[cmds.Command], why: str) -> None:
        await make_uncertain(self.store, commands, why, now=self.clock())
        self.on_commit()

    async def resolve(
        self, account: str, order_id: str, *, sent: bool, action: cmds.Action | None = None
    ) -> list[cmds.Command]:
        """Settle an order's uncertain commands (of `action`) by a person's word, each with its
        `order.action_resolved`; return them (`NotResolved` when none is)."""
        now = self.clock()
        found = await resolve_by_hand(self.store, account, order_id, sent, now=now, action=action)
        self.on_commit()
        return found
