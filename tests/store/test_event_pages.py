"""`events` on a long history: each event's undelivered sinks are found through the outbox's key
(sink, event_seq), never by reading the whole outbox for every event (10,000 events took four
minutes, 100,000 never ended), and the history is read and printed a page at a time."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from reconciler.config import load_config
from reconciler.sinks import sink_names
from reconciler.store import Store
from reconciler.store.event_pages import PAGE
from tests.conftest import call_cli, cli_env, environ, write_config
from tests.fake_providers import FakeCCNow

# 10,000: the reading of the outbox for each event took four minutes at this size, past the
# test's 60 s bound (the query plans are checked above too).
EVENTS = 10_000
SINKS = ("jsonl", "log")


def _waiting(seq: int) -> tuple[str, ...]:
    """The sinks that do not have event `seq` in the stores made here."""
    return tuple(s for s, every in (("jsonl", 997), ("log", 1499)) if seq % every == 0)


def _fill(db: Path, count: int) -> None:
    """Store `count` events, each queued for both sinks and delivered but to `_waiting`'s
    (pending or dead-lettered); a sink of an older config has delivery rows too."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        events, deliveries = [], []
        for seq in range(1, count + 1):
            data = {"source": "ccnow", "account": "default", "order_id": f"o-{seq}"}
            data["status"] = "pending"
            body = json.dumps({"id": f"e-{seq}", "type": "order.tracked", "data": data})
            events.append((seq, f"e-{seq}", 1e9 + seq, f"o-{seq}", body.encode()))
            for sink in (*SINKS, "gone"):
                state = "delivered" if sink not in _waiting(seq) else ("pending", "dead")[seq % 2]
                deliveries.append((sink, seq, "pending" if sink == "gone" else state))
        conn.executemany(
            "INSERT INTO events (seq, id, type, time, source, account, order_id, severity, "
            "body) VALUES (?, ?, 'order.tracked', ?, 'ccnow', 'default', ?, 'info', ?)",
            events,
        )
        conn.executemany(
            "INSERT INTO deliveries (sink, event_seq, state) VALUES (?, ?, ?)", deliveries
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def _store(tmp_path: Path, count: int) -> Path:
    db = tmp_path / "reconciler.db"
    await (await Store.open(db, sinks=SINKS)).close()
    _fill(db, count)
    return db


async def test_the_history_finds_undelivered_sinks_by_the_outbox_key(tmp_path: Path) -> None:
    db = await _store(tmp_path, 3 * PAGE)
    store = await Store.open(db, readonly=True)
    statements: list[str] = []
    try:
        await store.conn.set_trace_callback(statements.append)
        for sinks in (frozenset(SINKS), None):
            found = await store.events.history(undelivered=True, sinks=sinks)
            expected = [s for s in range(1, 3 * PAGE + 1) if _waiting(s) or sinks is None]
            assert [e.seq for e in found] == expected
        plans = {}
        for sql in set(statements):  # a copy: the EXPLAINs are traced too
            rows = await store.conn.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}")
            plans[sql] = [r[3] for r in rows]
    finally:
        await store.close()
    reads = [
        p
        for p in plans.values()
        if any(d.split()[:2] in (["SCAN", "d"], ["SEARCH", "d"]) for d in p)
    ]
    assert reads, plans
    for plan in plans.values():
        # No step reads the whole outbox, or the whole history for a page.
        assert not [d for d in plan if d.startswith(("SCAN d", "SCAN deliveries", "SCAN e"))], plan
        assert not [d for d in plan if "TEMP B-TREE" in d], plan
    pages = [p for p in plans.values() if any(d.startswith("SEARCH e ") for d in p)]
    assert pages and all("SEARCH e USING INTEGER PRIMARY KEY (rowid>?)" in p for p in pages)
    assert all("SEARCH d USING PRIMARY KEY (sink=? AND event_seq=?)" in p for p in pages)


async def test_pages_come_before_the_history_is_read(tmp_path: Path) -> None:
    db = await _store(tmp_path, 3 * PAGE)
    store = await Store.open(db, readonly=True)
    statements: list[str] = []
    try:
        await store.conn.set_trace_callback(statements.append)
        pages = store.events.pages(sinks=frozenset(SINKS))
        first = await anext(pages)
        read = list(statements)
        rest = [page async for page in pages]
    finally:
        await store.close()
    assert [e.seq for e in first] == list(range(1, PAGE + 1))
    assert len(read) == 1 and read[0].endswith(f"LIMIT {PAGE}"), read
    assert [len(p) for p in rest] == [PAGE, PAGE]
    assert all(e.undelivered == _waiting(e.seq) for page in (first, *rest) for e in page)
    assert first[996].undelivered == ("jsonl",)


async def test_events_on_a_long_history_answers_soon_with_the_undelivered_sinks(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    with environ(cli_env()):
        assert sorted(sink_names(load_config(cfg))) == list(SINKS)
    await _store(tmp_path, EVENTS)
    waiting = {f"e-{s}": list(_waiting(s)) for s in range(1, EVENTS + 1) if _waiting(s)}
    start = time.monotonic()
    listed = await call_cli("--config", cfg, "events", "--undelivered", "--json", env=cli_env())
    taken = time.monotonic() - start
    assert listed.code == 0, listed.stderr
    # The text json.dumps makes of the whole list, written by elements.
    found = json.loads(listed.stdout)
    assert listed.stdout == json.dumps(found, indent=1, ensure_ascii=False) + "\n"
    # The sink of an older config is waiting for nothing.
    assert {e["id"]: e["undelivered"] for e in found} == waiting
    assert [e["id"] for e in found] == list(waiting)
    table = await call_cli("--config", cfg, "events", env=cli_env())
    taken += time.monotonic() - start
    assert table.code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == EVENTS + 1 and lines[0].startswith("TIME")
    # Line n is event n's, and its last column the sinks that do not have it.
    assert [lines[n].split()[-1] for n in (1, 997, 1499, 2991)] == ["-", "jsonl", "log", "jsonl"]
    # Seconds, where reading the outbox for each event took over ten minutes; generous for a
    # loaded machine.
    assert taken < 60, taken
