"""Retention (`[store] keep_events`): delivered history older than the window is pruned, with the
orders that reached an end state before it; nothing a sink has not confirmed is ever deleted."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.config import ConfigError, load_config
from reconciler.events import Event
from reconciler.model import EventType
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.runtime import Runtime
from reconciler.scheduler import Scheduler
from reconciler.store import Store
from reconciler.store.retention import prune
from tests.conftest import (
    call_cli,
    cli_env,
    copy_new_store,
    daemon_here,
    new_store_file,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_providers import CCV_KEY, FakeCCV

DAY = 86400.0
NOW = 1_800_000_000.0
KEEP_S = 400 * DAY
WATCHED = {("ccv", "default"): 180 * DAY}  # the configured accounts' watch_settled
IDS = [f"5a6b7c8d-0000-4000-8000-{n:012d}" for n in range(1, 7)]


def _event(n: int, at: float) -> Event:
    data = {"source": "ccv", "account": "default", "order_id": f"o{n}", "status": "New"}
    return Event(f"e-{n}", EventType.STATUS_CHANGED, at, "ccv", "default", f"o{n}", "info", data)


# One example: (old?, state for sink "log", for "jsonl", for "gone"); None: no delivery row
# (a sink added after the event). "gone" is not configured any more.
_STATES = st.sampled_from([None, "pending", "delivered", "dead"])
_EXAMPLE = st.lists(st.tuples(st.booleans(), _STATES, _STATES, _STATES), min_size=1, max_size=40)
_STATE_LIST = [None, "pending", "delivered", "dead"]
_EVERY_ROW = list(itertools.product([False, True], _STATE_LIST, _STATE_LIST, _STATE_LIST))


@pytest.fixture(scope="module")
def new_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new store, made once: each example's is a copy of it."""
    return new_store_file(tmp_path_factory.mktemp("new") / "r.db", ("log", "jsonl", "gone"))


# Each example opens a store (7 s of a loaded run at 60): 25 draws, and every combination of
# age and states in one example, cut into chunks of one and of seven.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_EXAMPLE, chunk=st.integers(1, 7))
@example(rows=_EVERY_ROW, chunk=1)
@example(rows=_EVERY_ROW, chunk=7)
def test_prune_never_deletes_an_event_a_configured_sink_has_not_confirmed(
    new_store: Path, rows: list[tuple[bool, str | None, str | None, str | None]], chunk: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = copy_new_store(new_store, Path(tmp) / "r.db")
        kept, deleted = asyncio.run(_prune_example(path, rows, chunk))
    newest = len(rows)  # the newest event stays: seqs are counted from it
    for seq, (old, log, jsonl, gone) in enumerate(rows, 1):
        confirmed = all(s in (None, "delivered") for s in (log, jsonl))
        if old and confirmed and seq != newest:
            assert seq in deleted
        else:
            # Kept, with the deliveries of configured sinks as they were; the sink no longer
            # configured keeps what it has not got of a younger event (named again, it gets
            # them), and of an older one only what it had (it holds nothing back).
            if old and gone != "delivered":
                gone = None
            states = (("log", log), ("jsonl", jsonl), ("gone", gone))
            assert kept[seq] == {k: v for k, v in states if v}


async def _prune_example(
    path: Path, rows: list[tuple[bool, str | None, str | None, str | None]], chunk: int
) -> tuple[dict[int, dict[str, str]], set[int]]:
    store = await Store.open(path, sinks=("log", "jsonl", "gone"))
    try:
        events = [
            _event(n, NOW - (KEEP_S + DAY if old else DAY)) for n, (old, *_) in enumerate(rows)
        ]
        async with store.transaction():
            await store.events.add(events)
        deliveries = [
            (sink, seq, state)
            for seq, (_, *states) in enumerate(rows, 1)
            for sink, state in zip(("log", "jsonl", "gone"), states, strict=True)
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
        await prune(
            store, sinks=("log", "jsonl"), keep_s=KEEP_S, now=NOW, watched=WATCHED, chunk=chunk
        )
        seqs = {r[0] for r in await store.conn.execute_fetchall("SELECT seq FROM events")}
        kept: dict[int, dict[str, str]] = {seq: {} for seq in seqs}
        for seq, sink, state in await store.conn.execute_fetchall(
            "SELECT event_seq, sink, state FROM deliveries"
        ):
            kept[seq][sink] = state
        return kept, set(range(1, len(rows) + 1)) - seqs
    finally:
        await store.close()


# The newest event of a store in use: left as it is when the history is aged, as a store's
# newest event is recent (one whose whole history is older than the window is not pruned).
_NOT_NEWEST = "seq < (SELECT max(seq) FROM events)"


def _age(db: Path, days: float, *, where: str = _NOT_NEWEST) -> None:
    """Move history back in time, as if it had happened `days` earlier (the newest event
    aside, unless `where` names it)."""
    shift = days * DAY
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE events SET time = time - ? WHERE {where}", (shift,))
        conn.execute(
            "UPDATE orders SET last_changed = last_changed - ?, first_seen = first_seen - ?, "
            "tracked_at = tracked_at - ?",
            (shift, shift, shift),
        )
    conn.close()


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        value = int(conn.execute(sql).fetchone()[0])
    conn.close()
    return value


async def test_catch_up_prunes_old_delivered_history_and_ended_orders(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # Three orders ended long ago, three are still open.
    fake_ccv.orders = {i: ("Completed" if n < 3 else "New") for n, i in enumerate(IDS)}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    # A sink that still sends events older than the window (else one pending is dead-lettered).
    cfg.write_text(
        cfg.read_text().replace('type = "jsonl"\n', 'type = "jsonl"\nmax_age = "1000d"\n')
    )
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccv", *IDS)).code == 0
    first = await call_cli("--config", cfg, "catch-up")
    assert first.code == 0, first.stderr
    assert _count(db, "SELECT count(*) FROM events") == 6
    _age(db, 401)
    # One old event waits for the jsonl sink, one is dead-lettered; a sink that is gone from
    # the config still has a row that would hold everything back.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE deliveries SET state = 'pending' WHERE sink = 'jsonl' AND event_seq = 1"
        )
        conn.execute("UPDATE deliveries SET state = 'dead' WHERE sink = 'jsonl' AND event_seq = 2")
        conn.execute("INSERT INTO deliveries (sink, event_seq) SELECT 'removed', seq FROM events")
    conn.close()
    size = db.stat().st_size

    result = await call_cli("--config", cfg, "catch-up")
    # The removed sink's backlog is said and counted undelivered (75) before the events older
    # than the window are let go of (5: the newest, 6, is younger).
    assert result.code == 75, result.stderr
    (done,) = [x for x in result.log_lines() if x.get("message") == "catch-up.done"]
    assert done["undelivered"] == {"removed": 6}
    (line,) = [x for x in result.log_lines() if x.get("message") == "store.pruned"]
    # Seq 1 is delivered by this catch-up before it prunes: only the dead letter is still
    # unconfirmed. The newest event (6) stays too: the next seq is counted from it.
    assert (line["events"], line["orders"], line["released_deliveries"]) == (4, 3, 5)
    assert line["kept_undelivered"] == 1
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT seq FROM events")] == [2, 6]
        assert conn.execute(
            "SELECT event_seq FROM deliveries WHERE sink = 'removed'"
        ).fetchall() == [(6,)]
        left = {r[0] for r in conn.execute("SELECT order_id FROM orders")}
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    conn.close()
    assert left == set(IDS[3:])  # the open ones stay, however old
    assert db.stat().st_size <= size
    # Let go of: a removed sink then holds nothing back, and its younger event still waits
    # for it (named again, it gets it).
    again = await call_cli("--config", cfg, "catch-up")
    assert again.code == 75, again.stderr
    (done,) = [x for x in again.log_lines() if x.get("message") == "catch-up.done"]
    assert done["undelivered"] == {"removed": 1}
    (line,) = [x for x in again.log_lines() if x.get("message") == "store.pruned"]
    assert (line["events"], line["released_deliveries"]) == (0, 0)


async def test_a_pruned_order_found_again_gets_new_event_ids(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    order = IDS[0]
    fake_ccv.orders = {order: "Completed"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccv", order)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    # A second event keeps the first from being the newest (which always stays).
    assert (await call_cli("--config", cfg, "track", "ccv", IDS[1])).code == 0
    fake_ccv.orders[IDS[1]] = "New"
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    _age(db, 401, where=f"order_id = '{order}'")
    pruned = await call_cli("--config", cfg, "catch-up")
    assert pruned.code == 0
    assert _count(db, f"SELECT count(*) FROM orders WHERE order_id = '{order}'") == 0

    assert (await call_cli("--config", cfg, "track", "ccv", order)).code == 0
    again = await call_cli("--config", cfg, "catch-up")
    assert again.code == 0, again.stderr
    found = [e for e in read_events(tmp_path) if e["subject"] == order]
    assert [e["data"]["status"] for e in found] == ["Completed", "Completed"]
    assert found[0]["id"] != found[1]["id"]  # delivered, not taken for the pruned one


async def test_pruning_while_a_catch_up_runs_loses_and_doubles_nothing(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    ids = [f"5a6b7c8d-0000-4000-8000-{n:012d}" for n in range(1, 601)]
    fake_ccv.orders = dict.fromkeys(ids, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    config = load_config(cfg)
    db = tmp_path / "reconciler.db"
    async with Runtime(config) as rt:
        # Several pass transactions and many prune chunks, so that the two interleave.
        rt.reconciler.batch_rows = 200
        # A year of old, delivered history to prune.
        old = [_event(n, time.time() - 500 * DAY) for n in range(800)]
        old.append(_event(800, time.time()))  # the newest, which always stays
        async with rt.store.transaction():
            await rt.store.events.add(old)
            await rt.store.conn.execute("UPDATE deliveries SET state = 'delivered'")
        await rt.store.orders.track("ccv", "default", [(i, None) for i in ids], time.time())
        delivering = asyncio.ensure_future(rt.delivery.run())
        try:
            report, pruned = await asyncio.gather(
                rt.coordinators.catch_up(),
                prune(
                    rt.store,
                    sinks=rt.store.events.sinks,
                    keep_s=config.keep_events_s,
                    now=time.time(),
                    watched=WATCHED,
                    chunk=10,
                ),
            )
        finally:
            rt.delivery.stop()
            await delivering
        assert await rt.delivery.drain(10)
    assert report.ok and report.checked == 600
    assert pruned.events == 800
    written = [e["subject"] for e in read_events(tmp_path)]
    assert sorted(written) == sorted(ids)  # each discovery once, none lost
    assert _count(db, "SELECT count(*) FROM events") == 601
    assert _count(db, "SELECT count(*) FROM deliveries WHERE state != 'delivered'") == 0


async def test_a_store_from_before_retention_is_converted_once(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {IDS[0]: "New"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccv", IDS[0])).code == 0
    with sqlite3.connect(db, isolation_level=None) as conn:  # as earlier versions made it
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
    first = await call_cli("--config", cfg, "catch-up")
    assert first.code == 0, first.stderr
    assert [x["message"] for x in first.log_lines()].count("store.vacuumed") == 1
    assert _count(db, "PRAGMA auto_vacuum") == 2
    second = await call_cli("--config", cfg, "catch-up")
    assert "store.vacuumed" not in [x["message"] for x in second.log_lines()]


@pytest.mark.parametrize(
    ("value", "problem"), [('"0"', "greater than 0"), ('"a year"', "invalid duration")]
)
async def test_keep_events_is_a_positive_duration(tmp_path: Path, value: str, problem: str) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text(
        f'[store]\nkeep_events = {value}\n[ccv]\nbase_url = "http://127.0.0.1:1"\napi_key = "t_x"\n'
    )
    with pytest.raises(ConfigError, match=problem) as caught:
        load_config(cfg)
    assert "store.keep_events" in str(caught.value)
    cfg.write_text(
        '[store]\nkeep_events = "30d"\n[ccv]\nbase_url = "http://127.0.0.1:1"\napi_key = "t_x"\n'
    )
    assert load_config(cfg).keep_events_s == 30 * DAY
    result = await call_cli("--config", cfg, "check", env=cli_env())
    assert result.code == 0, result.stderr


async def test_the_daemon_prunes_after_its_start_up_pass(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.orders = {IDS[0]: "Completed", IDS[1]: "New"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccv", *IDS[:2])).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    _age(db, 401)
    log = tmp_path / "daemon.log"
    async with daemon_here(cfg):
        await poll_until(lambda: log.exists() and "store.pruned" in log.read_text(), 20, "prune")
    (line,) = [json.loads(x) for x in log.read_text().splitlines() if "store.pruned" in x]
    assert (line["events"], line["orders"]) == (1, 1)  # the newest event stays
    assert _count(db, "SELECT count(*) FROM orders") == 1


async def test_the_daemon_schedules_the_prune_daily() -> None:
    ran = asyncio.Event()

    async def prune_now() -> None:
        ran.set()

    scheduler = Scheduler(Coordinators(cast(Reconciler, None), {}, {}), prune=prune_now)
    scheduler.start()
    try:
        job = scheduler.scheduler.get_job("prune")
        first = job.next_run_time
        assert first.timestamp() == pytest.approx(time.time() + DAY, abs=60)
        job.modify(next_run_time=datetime.now(timezone.utc))  # as if a day had passed
        await asyncio.wait_for(ran.wait(), 10)
        after = scheduler.scheduler.get_job("prune").next_run_time
        assert after.timestamp() == pytest.approx(time.time() + DAY, abs=60)
    finally:
        await scheduler.shutdown(1.0)


async def test_closed_writes_older_than_the_window_go_open_ones_stay(tmp_path: Path) -> None:
    # Invariant 6: the database is bounded. Submissions and commands closed before the window
    # go; one still being sent, waiting, or waiting for a person's word stays, however old.
    store = await Store.open(tmp_path / "r.db", sinks=["log"])
    now, old = 1_800_000_000.0, 1_800_000_000.0 - 500 * 86400
    submissions = [
        ("succeeded", old, old),
        ("failed", old, old),
        ("resolved", old, old),
        ("uncertain", old, None),
        ("sending", old, None),
        ("succeeded", now - 60, now - 60),
    ]
    commands = [
        ("succeeded", old),
        ("refused", old),
        ("not_sent", old),
        ("queued", None),
        ("uncertain", None),
        ("refused", now - 60),
    ]
    async with store.transaction():
        for n, (state, created, closed) in enumerate(submissions):
            await store.conn.execute(
                "INSERT INTO submissions (account, external_reference, state, created_at, "
                "closed_at) VALUES ('default', ?, ?, ?, ?)",
                (f"ref-{n}", state, created, closed),
            )
        for n, (state, closed) in enumerate(commands):
            await store.conn.execute(
                "INSERT INTO commands (account, order_id, action, idempotency_key, state, "
                "created_at, closed_at) VALUES ('default', '396-10-1142', 'ship', ?, ?, ?, ?)",
                (f"k-{n}", state, old, closed),
            )
    try:
        report = await prune(store, sinks=["log"], keep_s=400 * 86400, now=now, watched=WATCHED)
    finally:
        await store.close()
    assert report.writes == 6
    with sqlite3.connect(tmp_path / "r.db") as conn:
        left = [r[0] for r in conn.execute("SELECT state FROM submissions ORDER BY id")]
        assert left == ["uncertain", "sending", "succeeded"]
        left = [r[0] for r in conn.execute("SELECT state FROM commands ORDER BY id")]
        assert left == ["queued", "uncertain", "refused"]
    conn.close()


async def test_references_remembered_past_remember_ref_are_pruned(tmp_path: Path) -> None:
    # Notifications for references nobody tracked: remembered for `remember_ref`, then gone,
    # or the table grows with every such notification for the life of the service.
    now = 1_800_000_000.0
    store = await Store.open(tmp_path / "r.db")
    try:
        async with store.transaction():
            for reference, age_s in (("old-1", 8 * 86400), ("old-2", 30 * 86400), ("new", 3600)):
                await store.sources.remember_within("default", reference, now - age_s)
        report = await prune(
            store,
            sinks=["log"],
            keep_s=400 * 86400,
            now=now,
            watched=WATCHED,
            remember_ref_s=7 * 86400,
        )
        assert report.references == 2
        rows = await store.conn.execute_fetchall(
            "SELECT external_reference FROM pending_references"
        )
        assert [r[0] for r in rows] == ["new"]
        # Without a receiver no notification comes: every remembered reference goes.
        again = await prune(store, sinks=["log"], keep_s=400 * 86400, now=now, watched=WATCHED)
        assert again.references == 1
    finally:
        await store.close()


async def test_a_keep_events_under_a_day_is_taken_with_a_warning(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # README: "a `keep_events` of days, not seconds" (the feed, repeats of a reference or an
    # idempotency key); "1s" was taken in silence. Not refused: tests keep an hour.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    text = cfg.read_text()
    for keep, warned in (('"1s"', [1.0]), ("3600", [3600.0]), ('"1d"', [])):
        cfg.write_text(text.replace("[store]\n", f"[store]\nkeep_events = {keep}\n", 1))
        for command in ("check", "catch-up"):
            result = await call_cli("--config", cfg, command, env=cli_env())
            assert result.code == 0, result.stderr
            lines = [x for x in result.log_lines() if x["message"] == "config.keep_events_short"]
            assert [(x["level"], x["keep_events_s"]) for x in lines] == [
                ("warning", s) for s in warned
            ]
            assert all("keep days" in x["hint"] for x in lines)
