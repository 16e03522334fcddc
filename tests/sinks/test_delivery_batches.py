"""A sink's batch is as large as a pass's: the events a catch-up commits in one transaction
reach a sink in one batch, read once and recorded delivered in one commit (delivery.py). The
real store, reconciler and dispatcher, a sink that keeps the size of each batch it is handed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reconciler.config.schema import LogSinkConfig
from reconciler.delivery import Delivery
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.passes.batcher import BATCH_ROWS
from reconciler.reconcile import Reconciler
from reconciler.sinks.base import Cutoff, Delivered, DeliveryResult, OutboxEvent
from reconciler.store import Store
from tests.store.test_priority import config_for


class BatchSizes:
    """Takes every event; keeps the size of each batch it is handed."""

    name = "sizes"

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        self.batches.append(len(events))
        return [Delivered()] * len(events)

    async def close(self) -> None:
        pass


async def test_a_pass_s_committed_batch_reaches_a_sink_in_one_batch(tmp_path: Path) -> None:
    # Each batch a sink is handed costs a read of the outbox and a commit (an fsync) recording
    # it delivered: a catch-up's batch of 2,000 events read and recorded 500 at a time took
    # four of each, 30 of a 20,000-order catch-up's 61 commits.
    store = await Store.open(tmp_path / "reconciler.db", sinks=("sizes",))
    try:
        ids = [f"B-{n:05d}" for n in range(BATCH_ROWS)]
        await store.orders.track("ccv", "default", [(i, None) for i in ids], 1.0)
        reconciler = Reconciler(config_for(tmp_path), store)
        found = [Observation(OrderKey("ccv", "default", i), Outcome.OK, "New", None) for i in ids]
        assert await reconciler.apply(found, via="catch-up") == BATCH_ROWS  # one transaction
        sink = BatchSizes()
        delivery = Delivery(store, [(sink, LogSinkConfig(name="sizes"))])
        assert await delivery.drain(30.0)
        assert sink.batches == [BATCH_ROWS]
        assert not any((await store.outbox.pending_counts()).values())
    finally:
        await store.close()
