"""Observations of one pass over one account, committed a batch at a time by a writer task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ..model import Observation, Outcome, Source, Via
from .hint_gate import HintGate
from .report import PassReport

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..store.live_pages import Page

BATCH_ROWS = 2000  # observations per transaction
PENDING_BATCHES = 4  # full batches waiting for the writer before workers wait too
# Observations per transaction while a notification is checked: its own transaction waits for
# the one in progress, and a short one keeps that wait short.
HINT_ROWS = 100
# While notifications arrive (hint_gate.RECENT_S), a pass's transaction holds the writer about
# this long at most, whatever the machine's speed: a hint that arrives while one is in progress
# waits for the rest of it. A full batch took 0.3-1.3 s on a loaded machine, the tail of a
# notification's latency.
PART_S = 0.025
# Observations per transaction, at least, while a pass keeps to a shorter duration for a CCV
# submit (hint_gate.WRITE_PART_S): fewer would make each observation a commit (an fsync).
WRITE_ROWS = 10


class Writer(Protocol):
    """What a batcher writes through: the reconciler (reconcile.py)."""

    metrics: Metrics | None
    on_checked: Callable[[int], None]
    batch_rows: int  # observations per transaction
    pending_batches: int  # full batches queued before workers wait
    hint_rows: int  # observations per transaction while a notification is checked
    hints: HintGate  # notification checks in flight, which a pass gives way to
    part_s: float  # a transaction's duration, at most, while notifications arrive
    last_write_s: float  # how long the latest `apply` held the writer

    async def apply(
        self,
        observations: Sequence[Observation],
        *,
        via: Via,
        report: PassReport | None = None,
        discover: bool = False,
        page: Page | None = None,
    ) -> int:
        """Commit observations in one transaction; return the number of events queued."""
        ...


class Batcher:
    """Collects observations from concurrent workers; a writer task commits them a batch at a
    time while the workers go on asking. Workers wait only when the reconciler's
    `pending_batches` are queued. It lives as long as the pass over one account, and so times
    it for the metrics."""

    def __init__(
        self,
        reconciler: Writer,
        via: Via,
        report: PassReport,
        source: Source,
        account: str,
        *,
        discover: bool = False,
        timed: bool = True,
    ) -> None:
        self.reconciler = reconciler
        self.via = via
        self.report = report
        self.discover = discover
        self.where = (source, account)
        self.started = time.monotonic()
        self.timed = timed
        self.buffer: list[Observation] = []
        self.queue: asyncio.Queue[list[Observation] | None] = asyncio.Queue(
            reconciler.pending_batches
        )
        self.writer: asyncio.Task[None] | None = None
        self.error: Exception | None = None
        # The page of orders the pass is checking (a CCV pass sets each page it reads).
        self.page: Page | None = None
        self.row_s: float | None = None  # the writer's time per observation, as last measured

    async def add(self, obs: Observation) -> None:
        if self.via != "notification" and self.reconciler.hints.in_flight:
            # Before the worker's next request: a hint's check goes first (hint_gate.py). Asked
            # only while one runs: awaiting give_way costs a coroutine per check.
            await self.reconciler.hints.give_way()
        self.buffer.append(obs)
        if len(self.buffer) >= self.reconciler.batch_rows:
            if self.error is not None:
                raise self.error  # a failed write stops the workers with its error
            batch, self.buffer = self.buffer, []
            if self.writer is None:
                self.writer = asyncio.ensure_future(self._write())
            await self.queue.put(batch)

    async def flush(self) -> None:
        """Write what is buffered and wait until every batch is committed."""
        batch, self.buffer = self.buffer, []
        writer, self.writer = self.writer, None
        if writer is not None:
            await self.queue.put(None)
            await writer
        if self.error is not None:
            raise self.error
        if batch:
            await self._apply(batch)

    async def close(self) -> None:
        """Stop the writer without writing more (the pass is over or failed)."""
        metrics = self.reconciler.metrics
        if metrics is not None and self.timed:
            metrics.observe_pass(*self.where, self.via, time.monotonic() - self.started)
        writer, self.writer = self.writer, None
        self.buffer = []
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _write(self) -> None:
        # After a failure the writer goes on taking batches (and drops them), so that no worker
        # waits forever on a full queue; the next `add` or `flush` raises the failure.
        while (batch := await self.queue.get()) is not None:
            if self.error is None:
                try:
                    await self._apply(batch)
                except Exception as exc:
                    self.error = exc

    async def _apply(self, batch: list[Observation]) -> None:
        while batch:
            if self.via != "notification":
                # A pass's transaction started now would hold the writer, and the event loop,
                # that a hint's transaction and delivery wait for.
                await self.reconciler.hints.give_way()
            rows = self._part_rows(len(batch))
            await self._apply_part(batch[:rows])
            self.row_s = self.reconciler.last_write_s / rows
            batch = batch[rows:]

    def _part_rows(self, rows: int) -> int:
        """Return how many of `rows` observations the next transaction writes: all of them
        unless notifications arrive; then as many as fit in `part_s` at the pace measured
        (`hint_rows` while one is checked, or before the pace is known). While a submit is
        recent, in its shorter duration (hint_gate.WRITE_PART_S), at least WRITE_ROWS."""
        writer = self.reconciler
        if self.via == "notification" or not writer.hints.recent():
            return rows
        part_s = writer.hints.part_s(writer.part_s)
        for_a_submit = part_s < writer.part_s
        fewest = min(writer.hint_rows, WRITE_ROWS) if for_a_submit else writer.hint_rows
        if self.row_s is None or (writer.hints.in_flight and not for_a_submit):
            return min(rows, fewest)
        fit = int(part_s / self.row_s) if self.row_s > 0 else rows
        return min(rows, max(fewest, fit))

    async def _apply_part(self, batch: list[Observation]) -> None:
        self.report.checked += len(batch)
        self.reconciler.on_checked(len(batch))
        failed = [o for o in batch if o.outcome is Outcome.FAILED]
        if failed:
            self.report.failed += len(failed)
            self.report.reasons.update(o.reason or "failed" for o in failed)
        # Await first: `report.events += await ...` would read the count before the await.
        events = await self.reconciler.apply(
            batch, via=self.via, report=self.report, discover=self.discover, page=self.page
        )
        self.report.events += events
        metrics = self.reconciler.metrics
        if metrics is not None:
            # After the commit, as the write counts the "not found" it judged (reconcile.py):
            # a batch whose write failed is counted by none, and its checks are made again.
            metrics.observe_checks(*self.where, batch)
