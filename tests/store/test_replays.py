"""`replay`'s requeue on a real SQLite file: `--undelivered` takes only what the sink does not
have (pending or dead-lettered, since a time), and a requeued delivery's `max_age` counts from
the replay."""

from __future__ import annotations

from pathlib import Path

from reconciler.events import Event
from reconciler.model import EventType
from reconciler.store import Store


def event(n: int) -> Event:
    data = {"source": "ccv", "account": "default", "order_id": f"o{n}", "status": "New"}
    # Made at n seconds: event n is n seconds old at time 2n.
    return Event(
        f"e-{n}", EventType.STATUS_CHANGED, float(n), "ccv", "default", f"o{n}", "info", data
    )


async def states(store: Store) -> list[tuple[int, str, int]]:
    rows = await store.conn.execute_fetchall(
        "SELECT event_seq, state, attempts FROM deliveries WHERE sink = 'hooks' ORDER BY event_seq"
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def test_undelivered_requeues_pending_and_dead_since_a_time_with_a_fresh_max_age(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    try:
        async with store.transaction():
            await store.events.add([event(n) for n in range(1, 5)])
        await store.outbox.delivered("hooks", [1], 10.0)
        await store.outbox.failed("hooks", [(2, "http 500", None), (3, "http 500", 50.0)])
        assert await states(store) == [
            (1, "delivered", 0),
            (2, "dead", 1),
            (3, "pending", 1),
            (4, "pending", 0),
        ]
        assert await store.outbox.max_age_from("hooks", [1, 2, 3]) == {1: 1.0, 2: 2.0, 3: 3.0}

        assert await store.outbox.requeue("hooks", 2.5, undelivered=True, now=100.0) == 2
        assert await states(store) == [
            (1, "delivered", 0),
            (2, "dead", 1),
            (3, "pending", 0),
            (4, "pending", 0),
        ]
        assert await store.outbox.requeue("hooks", None, undelivered=True, now=200.0) == 3
        assert await states(store) == [
            (1, "delivered", 0),
            (2, "pending", 0),
            (3, "pending", 0),
            (4, "pending", 0),
        ]
        started = await store.outbox.max_age_from("hooks", [1, 2, 3, 4])
        assert started == {1: 1.0, 2: 200.0, 3: 200.0, 4: 200.0}

        # Without --undelivered: everything since the time, what the sink has too.
        assert await store.outbox.requeue("hooks", None, now=300.0) == 4
        assert await store.outbox.max_age_from("hooks", [1]) == {1: 300.0}
    finally:
        await store.close()


async def test_undelivered_reads_the_pending_and_dead_rows_never_the_delivered(
    tmp_path: Path,
) -> None:
    # Through the sink's key SQLite read every row the sink ever had (a year of delivered
    # ones) to requeue its few pending and dead ones.
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    statements: list[str] = []
    try:
        async with store.transaction():
            await store.events.add([event(n) for n in range(1, 5)])
        await store.outbox.failed("hooks", [(2, "http 500", None), (3, "http 500", 50.0)])
        await store.conn.set_trace_callback(statements.append)
        assert await store.outbox.requeue("hooks", None, undelivered=True, now=60.0) == 4
        updates = [s for s in statements if s.startswith("UPDATE deliveries")]
        plans = [
            [r[3] for r in await store.conn.execute_fetchall(f"EXPLAIN QUERY PLAN {s}")]
            for s in updates
        ]
    finally:
        await store.close()
    assert [p[0] for p in plans] == [
        "SEARCH deliveries USING INDEX deliveries_due (sink=?)",
        "SEARCH deliveries USING INDEX deliveries_dead (sink=?)",
    ]
