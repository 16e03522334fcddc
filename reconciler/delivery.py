"""The outbox dispatcher: hands committed events to each sink and records what each confirmed.

At least once: a row is marked delivered only after its sink said so. Failed deliveries are
retried after `retry_min`, doubling with jitter, honouring Retry-After, until `max_age`, then
dead-lettered (kept, logged at error). A sink whose receiver is gone (410) is disabled.

One path: each lane reads what its sink may have from the store, in seq (commit) order, woken
when this process commits and every `tick_s` for other processes' writes. Per order (per
ordering key: store/ordering.py, which gives the events naming no order theirs), a sink never gets a
later event before an earlier one: an event waits while an earlier event of its key waits for a
retry (a dead-lettered one no longer holds it back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .config import SinkConfig
from .logs import fields
from .passes.batcher import BATCH_ROWS
from .passes.hint_gate import HintGate
from .redact import text_forms
from .sinks import retries
from .sinks.base import (
    ABANDONED,
    NOT_ATTEMPTED,
    Cutoff,
    Delivered,
    DeliveryResult,
    OutboxEvent,
    RetryLater,
    Sink,
    SinkGone,
    crashed,
    looks_down,
)
from .store import Store, StoreError

log = logging.getLogger("reconciler.outbox")

# A lane's batch: a pass's write batch, so that the events of each transaction of a catch-up
# are read once and recorded delivered in one commit (an fsync), as one hand-off of the
# database thread each; batches of 500 took four of each per pass batch (30 more of a
# 20,000-order catch-up's 61 commits).
BATCH = BATCH_ROWS
# A lane's batch while a notification is checked: the hint's event, committed meanwhile, goes
# first in the lane's next read, and a short batch in hand makes that read come soon (a sink
# writing its batch at once, which `committed` does not interrupt; a short record after it).
HINT_BATCH = 50
# How often an idle lane reads the store anyway: another process may have queued events
# (`replay` beside a daemon). Commits of this process wake the lanes at once.
TICK_S = 5.0
# How long past its limit `drain` waits for an attempt under way (a webhook's answer, a
# program's exit) before it abandons it: cut at once, an answer due any moment would be lost
# and the event sent again.
DRAIN_GRACE_S = 1.0


@dataclass
class _Lane:
    """One sink and its delivery state."""

    sink: Sink
    config: SinkConfig
    disabled: bool = False
    disabled_checked_at: float = 0.0  # when the store last said the sink is still disabled
    paused_until: float = 0.0
    paused_at: float = 0.0  # when the pause began: a replay after it ends it
    refused: str | None = None  # the order of the last event attempted, if refused
    down_streak: int = 0  # pauses in a row for a receiver that looked down
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # Whether the lane holds the hint gate: a notification's event waits for it (see `committed`).
    holding: bool = False
    urgent_commits: int = 0  # commits that left urgent events for this lane


class Delivery:
    """Delivers the outbox to every sink; `committed()` after each commit. `secrets` (the
    config's) are masked in every reason a sink gives before it is logged or recorded."""

    def __init__(
        self,
        store: Store,
        sinks: Sequence[tuple[Sink, SinkConfig]],
        *,
        clock: Callable[[], float] = time.time,
        tick_s: float = TICK_S,
        hint_batch: int = HINT_BATCH,
        secrets: Sequence[str] = (),
    ) -> None:
        self.store = store
        self._secrets = text_forms(secrets)
        self.clock = clock
        self.tick_s = tick_s
        self.hint_batch = hint_batch  # events per batch while notifications are recent
        self.lanes = [_Lane(sink, cfg) for sink, cfg in sinks]
        if tuple(cfg.name for _, cfg in sinks) != store.events.sinks:
            # Events would wait for a sink without a lane, or a lane for events never queued.
            raise ValueError("the store must be opened with the outbox's sinks")
        self._stopping = False
        # What `stop` does to the batches `run` has in hand, one per lane: each records its
        # sink's confirmations as they come.
        self._cutoffs = {lane.config.name: self._recording_cutoff(lane) for lane in self.lanes}
        self._rng = random.Random()
        self.hints: HintGate | None = None  # the reconciler's: lanes keep batches short for them
        self._urgent_commits = 0  # the store's count of urgent commits, as last seen
        self._running = False  # lanes deliver (`run`): only then may one hold the hint gate
        # Events each sink dead-lettered in this process's run: `catch-up` and `replay` exit 75.
        self.dead_letters: dict[str, int] = {}
        # Hears of each batch a sink confirmed: (sink, events); progress of `replay`.
        self.on_delivered: Callable[[str, int], None] = lambda sink, n: None

    def wake(self) -> None:
        """Make every lane look for work."""
        for lane in self.lanes:
            lane.wakeup.set()

    def committed(self) -> None:
        """Events were just committed: every lane reads them from the store. A lane with a
        notification's event to deliver holds the hint gate until it has delivered it, so that
        passes keep the event loop free for that delivery as they did for the check."""
        priority = self.store.priority
        if (
            self.hints is not None
            and self._running
            and priority.urgent_commits != self._urgent_commits
        ):
            self._urgent_commits = priority.urgent_commits
            for lane in self.lanes:
                if not lane.disabled and priority.waiting(lane.config.name):
                    lane.urgent_commits += 1
                    # The batch in hand was read before the event: a slow receiver would take
                    # all of it first (BATCH events at 0.2 s each: minutes). It ends after
                    # the attempt under way, and the lane's next read hands the event first.
                    self._cutoffs[lane.config.name].interrupt()
                    if not lane.holding:
                        lane.holding = True
                        self.hints.enter()
        self.wake()

    def _let_go(self, lane: _Lane, urgent_commits: int) -> None:
        """Release the lane's hold on the hint gate unless an urgent event was committed since
        its last read began (`urgent_commits` then): a batch attempted, delivered or not, or a
        lane with nothing to do or paused, no longer holds passes back."""
        if lane.holding and lane.urgent_commits == urgent_commits and self.hints is not None:
            lane.holding = False
            self.hints.leave()

    async def load_disabled(self) -> None:
        """Skip sinks whose receiver said it is gone in an earlier run (`sink.still_disabled`:
        `sink.disabled` was said once, when it happened)."""
        disabled = await self.store.outbox.disabled_since()
        for lane in self.lanes:
            if lane.config.name in disabled and not lane.disabled:
                lane.disabled = True
                retries.log_disabled(lane.config.name, *disabled[lane.config.name])

    async def _enabled_again(self, lane: _Lane, now: float) -> bool:
        """Whether `replay --sink` enabled a disabled sink again meanwhile (from another
        process, while this daemon runs); asked of the store at most once a tick."""
        if now - lane.disabled_checked_at < self.tick_s:
            return False
        lane.disabled_checked_at = now
        if lane.config.name in await self.store.outbox.disabled_sinks():
            return False
        lane.disabled = False
        log.info("sink.enabled", extra=fields(sink=lane.config.name))
        return True

    def stop(self, within_s: float | None = None) -> None:
        """Make `run` return: a lane waiting (for work, for a retry) at once, a lane with a
        batch in hand once the event under way is answered, or abandoned after `within_s`
        (None: by its sink's own timeout). The rest of the batch stays pending; what the sink
        confirmed is recorded, so that no confirmed event is sent again."""
        self._stopping = True
        for cutoff in self._cutoffs.values():
            cutoff.close(within_s)
        self.wake()

    async def run(self) -> None:
        """Deliver until `stop()`; each sink in its own task, so a slow webhook never holds up
        the log or the file."""
        await self.load_disabled()
        self._running = True
        try:
            await asyncio.gather(*(self._run_lane(lane) for lane in self.lanes))
        finally:
            self._running = False
            for lane in self.lanes:
                self._cutoffs[lane.config.name].release()
                self._let_go(lane, lane.urgent_commits)

    async def _run_lane(self, lane: _Lane) -> None:
        while not self._stopping:
            lane.wakeup.clear()
            try:
                wait = await self._lane_once(lane, self._cutoffs[lane.config.name])
            except StoreError:
                # Logged once by the store's health. The lane reads the store again after a
                # tick; a delivery not recorded is sent again.
                wait = self.tick_s
            if wait == 0:
                continue
            wait = self.tick_s if wait is None else min(wait, self.tick_s)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lane.wakeup.wait(), wait)

    async def drain(
        self,
        timeout_s: float,
        *,
        only: str | None = None,
        grace_s: float = DRAIN_GRACE_S,
        retries: bool = True,
    ) -> bool:
        """Deliver what can be delivered within `timeout_s`; True when no sink holds anything.
        No event starts after the limit; one under way then gets `grace_s` more before it is
        abandoned. With `only`, that sink alone is delivered to and asked about (`replay
        --sink`); without `retries`, a sink waiting to retry is left waiting (a stop)."""
        await self.load_disabled()
        deadline = time.monotonic() + timeout_s
        lanes = [lane for lane in self.lanes if only in (None, lane.config.name)]
        cutoffs = {lane.config.name: self._recording_cutoff(lane) for lane in lanes}
        try:
            for lane in lanes:
                cutoffs[lane.config.name].close_in(timeout_s, grace_s)
            await asyncio.gather(
                *(
                    self._drain_lane(lane, deadline, cutoffs[lane.config.name], retries)
                    for lane in lanes
                )
            )
        finally:
            for cutoff in cutoffs.values():
                cutoff.release()
        return not any((await self.store.outbox.pending_counts(only)).values())

    async def _drain_lane(
        self, lane: _Lane, deadline: float, cutoff: Cutoff, retries: bool
    ) -> None:
        while True:
            wait = await self._lane_once(lane, cutoff)
            left = deadline - time.monotonic()
            if wait is None or left <= 0 or wait > left or (wait > 0 and not retries):
                return
            if wait > 0:
                await asyncio.sleep(wait)

    def _stopped(self) -> bool:
        return self._stopping

    def _recording_cutoff(self, lane: _Lane) -> Cutoff:
        name = lane.config.name
        return Cutoff(
            lambda seqs: self._mark_delivered(name, seqs), sink=name, secrets=self._secrets
        )

    async def _mark_delivered(self, sink: str, seqs: list[int]) -> None:
        """Record that `sink` confirmed events, and say so to `on_delivered`."""
        await retries.record_waiting(
            lambda: self.store.outbox.delivered(sink, seqs, self.clock()), self._stopped
        )
        self.on_delivered(sink, len(seqs))

    async def _lane_once(self, lane: _Lane, cutoff: Cutoff) -> float | None:
        """Deliver one batch of the events the store says are deliverable; return seconds until
        the lane wants to run again (0: at once), or None when it has nothing pending."""
        urgent_commits = lane.urgent_commits
        try:
            return await self._deliver_once(lane, urgent_commits, cutoff)
        finally:
            self._let_go(lane, urgent_commits)

    async def _deliver_once(self, lane: _Lane, urgent_commits: int, cutoff: Cutoff) -> float | None:
        now = self.clock()
        if lane.disabled and not await self._enabled_again(lane, now):
            return None
        name = lane.config.name
        if lane.paused_until > now + lane.config.retry_max_s:
            lane.paused_until = now  # set before the wall clock was put back: it is over
        if lane.paused_until > now:
            # A sink that looked down waits for its retry time, unless `replay` (another
            # process) queued events again since: the receiver is back, a person says.
            replayed = await self.store.outbox.last_replay(name)
            if replayed is None or replayed <= lane.paused_at:
                return lane.paused_until - now
            lane.paused_until = 0.0
            lane.refused, lane.down_streak = None, 0
        # Short batches while notifications are recent, not only while one is checked: the next
        # of a stream must not find a long batch of the backlog just begun.
        hinted = self.hints is not None and self.hints.recent()
        probing = lane.refused is not None or lane.down_streak > 0
        limit = 1 if probing else self.hint_batch if hinted else BATCH
        cutoff.resume()  # a notification's event committed from here on is after this read
        due = await self.store.outbox.due(name, now, limit, lane.config.retry_max_s)
        rows = due.rows
        if probing and rows:
            # After a refusal, or a pause for a receiver that looked down: one event, so that
            # a down receiver gets one attempt per pause.
            rows = rows[:1]
        if not rows:
            return None if due.next_at is None else max(due.next_at - now, 0.001)
        try:
            results = await lane.sink.deliver(rows, cutoff)
        except Exception as exc:  # a sink bug must not stop the others
            crashed(exc, self._secrets, sink=name)
            results = [RetryLater(f"sink raised {type(exc).__name__}")] * len(rows)
        # The notification's event is with the sink: recording that is no reason to hold passes.
        self._let_go(lane, urgent_commits)
        dead, refused = await self._record(lane, rows, results, set(await cutoff.recorded()))
        now = self.clock()
        if lane.paused_until > now:
            return lane.paused_until - now
        if due.full or dead or refused or len(rows) < len(due.rows) or cutoff.interrupted:
            # A dead letter holds nothing back: what it held, and the rest of the batch the sink
            # did not try after it, may be deliverable now. An event the receiver refused
            # alone has a retry time `due` did not know: read again. So does a notification's
            # event queued since the read.
            return 0
        return None if due.next_at is None else max(due.next_at - now, 0.001)

    async def _record(
        self,
        lane: _Lane,
        rows: Sequence[OutboxEvent],
        results: Sequence[DeliveryResult],
        recorded: set[int],
    ) -> tuple[int, bool]:
        """Record what the sink said of each event (but the confirmations `recorded` during the
        batch); return how many were dead-lettered, and whether any failed (its retry time is
        then new to the lane)."""
        cfg = lane.config
        now = self.clock()
        # What was recorded, the sink confirmed, whatever `results` says: a sink that raised
        # after confirming some (its batch all `RetryLater`) must not make them pending again.
        results = [
            Delivered() if row.seq in recorded else res
            for row, res in zip(rows, results, strict=False)
        ]
        delivered: list[int] = []
        failed: list[tuple[OutboxEvent, RetryLater]] = []
        gone: SinkGone | None = None
        for row, res in zip(rows, results, strict=False):
            if isinstance(res, Delivered):
                if row.seq not in recorded:  # else written during the batch
                    delivered.append(row.seq)
            elif res == ABANDONED:
                # Possibly received: said, since the receiver may then see it twice.
                log.warning("sink.abandoned", extra=fields(sink=cfg.name, event_id=row.id))
            elif isinstance(res, RetryLater):
                if res != NOT_ATTEMPTED:
                    failed.append((row, retries.masked(res, self._secrets)))
            elif gone is None:
                gone = retries.masked(res, self._secrets)
        if delivered:
            await self._mark_delivered(cfg.name, delivered)
        dead = 0
        # Every batch, a taken one too: a delivery between two refusals clears the first.
        down, lane.refused = looks_down(rows, results, lane.refused)
        newly_down = down
        if lane.refused is None:
            lane.down_streak = 0  # the receiver took the last event it was given
        elif lane.down_streak:
            down = True  # the one event tried after a pause was refused: pause again
        if failed:
            started = await self.store.outbox.max_age_from(cfg.name, [row.seq for row, _ in failed])
            plan = retries.plan(cfg, failed, started, now, self._rng)
            if down:  # an event refused alone holds back its own order only
                lane.down_streak, until = retries.down_pause(
                    cfg, lane.down_streak, newly_down, failed, plan.resume_at, now
                )
                lane.paused_until, lane.paused_at = max(lane.paused_until, until), now
            await retries.record_waiting(
                lambda: self.store.outbox.failed(cfg.name, plan.updates), self._stopped
            )
            plan.log()
            dead = plan.dead
            if dead:
                self.dead_letters[cfg.name] = self.dead_letters.get(cfg.name, 0) + dead
        if gone is not None:
            lane.disabled = True
            await self.store.outbox.disable_sink(cfg.name, gone.reason, now)
            retries.log_disabled(cfg.name, gone.reason)
        return dead, bool(failed)

    async def close(self) -> None:
        """Close every sink."""
        for lane in self.lanes:
            try:
                await lane.sink.close()
            except Exception:
                log.warning("sink.close_failed", extra=fields(sink=lane.config.name))
