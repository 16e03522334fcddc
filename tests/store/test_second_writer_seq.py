"""Event seqs beside a second writer of the same file: a store that numbered events, and so
holds the highest seq it stored, stores its next events after those another process committed
meanwhile (the write transaction takes up what another connection committed: history.follow),
never on a seq taken (an IntegrityError, exit 70 in a command)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from reconciler.events import Event
from reconciler.model import EventType
from reconciler.store import Store
from reconciler.writes.ccnow_resolve import resolve_by_hand
from tests.conftest import call_cli
from tests.fake_providers import FakeCCNow
from tests.writes.test_ccnow_actions import A
from tests.writes.test_resolved_events import ACTION_RESOLVED, uncertain_adjust

SINKS = ("log", "jsonl")


def event() -> Event:
    return Event(
        str(uuid.uuid4()), EventType.STATUS_CHANGED, time.time(), "ccv", "x", "o", "info", {}
    )


async def add(store: Store, n: int = 1) -> None:
    async with store.transaction():
        await store.events.add([event() for _ in range(n)])


async def seqs(db: Path) -> list[tuple[int, str]]:
    store = await Store.open(db, readonly=True)
    try:
        return [(e.seq, e.type) for e in await store.events.history()]
    finally:
        await store.close()


async def test_a_resolve_stores_its_event_after_those_a_second_store_committed_meanwhile(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    await uncertain_adjust(tmp_path, fake_ccnow)
    db = tmp_path / "reconciler.db"
    first = await Store.open(db, sinks=SINKS)  # as a command's writer opens it
    second = await Store.open(db, sinks=SINKS)
    try:
        await add(second, 2)  # between the first's open and its first write
        await add(first)  # the first now holds the highest seq it stored
        await add(second, 3)  # and another process stores past it
        found = await resolve_by_hand(first, "default", A, True, now=time.time())
        assert [c.order_id for c in found] == [A]
        await add(second)
    finally:
        await first.close()
        await second.close()
    stored = await seqs(db)
    numbers = [s for s, _ in stored]
    assert numbers == sorted(set(numbers)), stored  # each seq once, in commit order
    assert [t for _, t in stored][-2:] == [ACTION_RESOLVED, "order.status_changed"]
    # Each event queued for the sinks, none of them for another's seq.
    deliveries = await _deliveries(db)
    assert set(deliveries) == set(numbers)
    assert all(deliveries[s] == set(SINKS) for s, _ in stored[-6:]), deliveries


async def _deliveries(db: Path) -> dict[int, set[str]]:
    store = await Store.open(db, readonly=True)
    try:
        rows = await store.conn.execute_fetchall("SELECT event_seq, sink FROM deliveries")
    finally:
        await store.close()
    out: dict[int, set[str]] = {}
    for seq, sink in rows:
        out.setdefault(int(seq), set()).add(str(sink))
    return out


async def test_ccnow_resolve_beside_a_second_store_committing_events_all_the_while(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = await uncertain_adjust(tmp_path, fake_ccnow)
    db = tmp_path / "reconciler.db"
    second = await Store.open(db, sinks=SINKS)
    done = asyncio.Event()
    committed = 0

    async def keep_writing() -> None:
        nonlocal committed
        while not done.is_set():
            await add(second)
            committed += 1
            await asyncio.sleep(0)  # let the fakes answer; each commit is its own transaction

    writer = asyncio.ensure_future(keep_writing())
    try:
        resolved = await call_cli("--config", cfg, "ccnow", "resolve", A, "--sent")
    finally:
        done.set()
        await writer
        await second.close()
    assert resolved.code == 0, resolved.stderr
    assert committed > 0
    stored = await seqs(db)
    numbers = [s for s, _ in stored]
    assert numbers == sorted(set(numbers)), stored
    assert [t for _, t in stored].count(ACTION_RESOLVED) == 1
