"""The `store.pruned` line's `kept_undelivered` (PruneReport.kept) counts every event older than
the window that a configured sink has not confirmed (pending or dead-lettered), the newest
event among them: it stays in any case (the next seq is counted from it), but undelivered too.
It counted the newest one out: 1 where 2 dead letters were kept."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.store import Store
from reconciler.store.retention import PruneReport, prune
from tests.store.test_retention import DAY, KEEP_S, NOW, WATCHED, _event

_STATE_LIST = [None, "pending", "delivered", "dead"]
_STATES = st.sampled_from(_STATE_LIST)
_EVERY_ROW = list(itertools.product([False, True], _STATE_LIST, _STATE_LIST))


async def _prune(
    path: Path, rows: list[tuple[bool, str | None, str | None]], chunk: int
) -> PruneReport:
    store = await Store.open(path, sinks=("log", "jsonl"))
    try:
        events = [
            _event(n, NOW - (KEEP_S + DAY if old else DAY)) for n, (old, *_) in enumerate(rows)
        ]
        async with store.transaction():
            await store.events.add(events)
        deliveries = [
            (sink, seq, state)
            for seq, (_, *states) in enumerate(rows, 1)
            for sink, state in zip(("log", "jsonl"), states, strict=True)
        ]
        async with store.transaction():
            await store.conn.executemany(
                "DELETE FROM deliveries WHERE sink = ? AND event_seq = ?",
                [(sink, seq) for sink, seq, state in deliveries if state is None],
            )
            await store.conn.executemany(
                "UPDATE deliveries SET state = ? WHERE sink = ? AND event_seq = ?",
                [(state, sink, seq) for sink, seq, state in deliveries if state is not None],
            )
        return await prune(
            store, sinks=("log", "jsonl"), keep_s=KEEP_S, now=NOW, watched=WATCHED, chunk=chunk
        )
    finally:
        await store.close()


def test_two_old_dead_letters_the_newest_one_of_them_are_two_kept(tmp_path: Path) -> None:
    rows: list[tuple[bool, str | None, str | None]] = [
        (True, "delivered", "delivered"),
        (True, "delivered", "dead"),
        (True, "dead", None),
    ]
    report = asyncio.run(_prune(tmp_path / "r.db", rows, 1000))
    assert (report.events, report.kept) == (1, 2)


# Each example opens a store: 20 draws, and every combination of age and states in one
# example, cut into chunks of one and of five.
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(st.booleans(), _STATES, _STATES), min_size=1, max_size=20),
    chunk=st.integers(1, 5),
)
@example(rows=_EVERY_ROW, chunk=1)
@example(rows=_EVERY_ROW, chunk=5)
def test_kept_counts_each_old_event_a_sink_has_not_confirmed(
    rows: list[tuple[bool, str | None, str | None]], chunk: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = asyncio.run(_prune(Path(tmp) / "r.db", rows, chunk))
    unconfirmed = [old and any(s in ("pending", "dead") for s in states) for old, *states in rows]
    assert report.kept == sum(unconfirmed)
