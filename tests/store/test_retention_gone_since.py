"""A sink name the config no longer names keeps its undelivered rows for a week from when a
start or prune first found it unconfigured, not from each event's time: a sink renamed by
mistake after a 10-day receiver outage lost its whole backlog, and every dead letter older than
a week, at the first prune after the rename (seconds after `run` starts, or at the end of the
same `catch-up`), so there was no week to see the warning and name it back."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from reconciler.events import Event
from reconciler.json_text import iso_time
from reconciler.model import EventType
from reconciler.store import Store, gone_sinks
from reconciler.store.gone_sinks import RELEASE_GRACE_S
from reconciler.store.migrations import MIGRATIONS, SCHEMA_VERSION, statements
from reconciler.store.retention import prune
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow
from tests.store.test_retention_clock import Clocks
from tests.store.test_retention_renamed_sink import ORDERS, _named, _undelivered_warnings

DAY = 86400.0
NOW = 1_800_000_000.0
KEEP_S = 400 * DAY
WATCHED = {("ccnow", "default"): 180 * DAY}
AGES = [90 * DAY, 30 * DAY, 10 * DAY, 8 * DAY, 2 * DAY]


def _event(n: int, at: float) -> Event:
    data = {"source": "ccnow", "account": "default", "order_id": f"o{n}", "status": "pending"}
    return Event(f"e-{n}", EventType.STATUS_CHANGED, at, "ccnow", "default", f"o{n}", "info", data)


async def _outage(path: Path) -> Store:
    """A store whose sink `file` never got five events (90 to 2 days old), the two oldest of
    them dead letters (seq 1, 2): a receiver down for months."""
    store = await Store.open(path, sinks=("file",))
    async with store.transaction():
        await store.events.add([_event(n, NOW - age) for n, age in enumerate(AGES)])
        await store.conn.execute("UPDATE deliveries SET state = 'dead' WHERE event_seq IN (1, 2)")
    return store


async def _gone_since(store: Store) -> dict[str, float]:
    rows = await store.conn.execute_fetchall("SELECT name, since FROM gone_sinks")
    return {str(r[0]): float(r[1]) for r in rows}


async def test_a_backlog_older_than_a_week_survives_the_prune_after_a_rename(
    tmp_path: Path,
) -> None:
    # The events' age let it go: counts for `file` went (3 pending, 2 dead) -> (1, 0).
    assert RELEASE_GRACE_S == 7 * DAY
    store = await _outage(tmp_path / "r.db")
    try:
        assert await store.outbox.counts() == {"file": (3, 2)}
        renamed = ("archive",)
        report = await prune(store, sinks=renamed, keep_s=KEEP_S, now=NOW, watched=WATCHED)
        assert report.released == 0
        assert await store.outbox.counts() == {"file": (3, 2)}
        assert await _gone_since(store) == {"file": NOW}  # first found unconfigured now
        # Days later, within the week counted from then: still all there.
        later = NOW + RELEASE_GRACE_S - 60
        report = await prune(store, sinks=renamed, keep_s=KEEP_S, now=later, watched=WATCHED)
        assert (report.released, await store.outbox.counts()) == (0, {"file": (3, 2)})
        # A week after it was first found unconfigured: removed on purpose, let go of all.
        after = NOW + RELEASE_GRACE_S + 60
        report = await prune(store, sinks=renamed, keep_s=KEEP_S, now=after, watched=WATCHED)
        assert (report.released, await store.outbox.counts()) == (5, {})
        assert await _gone_since(store) == {}  # nothing left under the name: forgotten
    finally:
        await store.close()


async def test_a_name_configured_again_starts_a_new_week_when_it_goes_again(
    tmp_path: Path,
) -> None:
    store = await _outage(tmp_path / "r.db")
    try:
        await prune(store, sinks=("archive",), keep_s=KEEP_S, now=NOW, watched=WATCHED)
        # Named back (its receiver still down): no longer gone.
        both = ("file", "archive")
        await prune(store, sinks=both, keep_s=KEEP_S, now=NOW + 3 * DAY, watched=WATCHED)
        assert await _gone_since(store) == {}
        # Renamed again five days later: eight days after the first, a week from this one.
        again = NOW + 8 * DAY
        report = await prune(store, sinks=("archive",), keep_s=KEEP_S, now=again, watched=WATCHED)
        assert (report.released, await store.outbox.counts()) == (0, {"file": (3, 2)})
        assert await _gone_since(store) == {"file": again}
    finally:
        await store.close()


async def test_an_event_older_than_the_window_still_goes_at_once(tmp_path: Path) -> None:
    store = await _outage(tmp_path / "r.db")
    try:
        keep_s = 20 * DAY  # the two oldest are past the window: a removed sink holds back none
        report = await prune(store, sinks=("archive",), keep_s=keep_s, now=NOW, watched=WATCHED)
        assert (report.released, report.events) == (2, 2)
        assert await store.outbox.counts() == {"file": (3, 0)}
    finally:
        await store.close()


async def test_a_time_first_found_under_a_clock_since_set_back_counts_from_now(
    tmp_path: Path,
) -> None:
    # Recorded under a clock a year ahead, then the clock set right: the week counts from the
    # first prune that finds the record in its future, not from a year on.
    store = await _outage(tmp_path / "r.db")
    try:
        ahead = NOW + 365 * DAY
        report = await prune(store, sinks=("archive",), keep_s=KEEP_S, now=ahead, watched=WATCHED)
        assert report.released == 1  # the one past the window then, 455 days old
        assert await _gone_since(store) == {"file": ahead}
        await prune(store, sinks=("archive",), keep_s=KEEP_S, now=NOW, watched=WATCHED)
        assert await _gone_since(store) == {"file": NOW}
        after = NOW + RELEASE_GRACE_S + 60
        report = await prune(store, sinks=("archive",), keep_s=KEEP_S, now=after, watched=WATCHED)
        assert report.released == 4
    finally:
        await store.close()


async def test_a_clock_behind_at_one_prune_does_not_shorten_the_week(tmp_path: Path) -> None:
    # A box without a hardware clock, booted before its clock is set: one prune a day after
    # the rename under a clock 30 days behind lowered the time to then, and the next prune, an
    # hour later under a right clock, found the week long past and let go of all five rows.
    store = await _outage(tmp_path / "r.db")
    try:
        renamed = ("archive",)
        await prune(store, sinks=renamed, keep_s=KEEP_S, now=NOW, watched=WATCHED)
        behind = NOW + DAY - 30 * DAY
        report = await prune(store, sinks=renamed, keep_s=KEEP_S, now=behind, watched=WATCHED)
        assert report.released == 0
        assert await _gone_since(store) == {"file": NOW - 2 * DAY}  # the newest event's time
        right = NOW + DAY + 3600
        report = await prune(store, sinks=renamed, keep_s=KEEP_S, now=right, watched=WATCHED)
        assert (report.released, await store.outbox.counts()) == (0, {"file": (3, 2)})
    finally:
        await store.close()


async def test_a_name_first_found_under_a_clock_behind_counts_from_its_newest_event(
    tmp_path: Path,
) -> None:
    # A start (`run`, a `catch-up` timer) before the clock is set, 30 days behind: recorded at
    # its word, the week had passed at the first prune under a right clock. No finding is
    # earlier than the newest event the store holds (2 days before NOW here).
    store = await _outage(tmp_path / "r.db")
    try:
        assert await gone_sinks.note(store, ["file"], NOW - 30 * DAY) == {"file": NOW - 2 * DAY}
        report = await prune(store, sinks=("archive",), keep_s=KEEP_S, now=NOW, watched=WATCHED)
        assert (report.released, await store.outbox.counts()) == (0, {"file": (3, 2)})
        # Recorded right, a start under a clock behind leaves it as it is.
        assert await gone_sinks.note(store, ["file"], NOW - 30 * DAY) == {"file": NOW - 2 * DAY}
    finally:
        await store.close()


async def test_a_quiet_store_is_bounded_by_its_last_poll_under_a_clock_behind(
    tmp_path: Path,
) -> None:
    # No event for 2 days, but the account was polled at the rename: a start under a clock 30
    # days behind lowers the time no earlier than that poll.
    store = await _outage(tmp_path / "r.db")
    try:
        async with store.transaction():
            await store.conn.execute(
                "INSERT INTO sources (source, account, last_success, last_failure) "
                "VALUES ('ccnow', 'default', ?, ?)",
                (NOW - DAY, NOW),
            )
        assert await gone_sinks.note(store, ["file"], NOW) == {"file": NOW}
        assert await gone_sinks.note(store, ["file"], NOW - 30 * DAY) == {"file": NOW}
    finally:
        await store.close()


async def test_a_clock_put_ahead_while_the_daemon_runs_does_not_pass_the_week(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The daemon's daily prunes: the name found unconfigured at the first, then the wall clock
    # put 30 days ahead on day 2. Taken at its word, the week would have passed at once.
    store = await _outage(tmp_path / "r.db")
    clocks = Clocks(NOW)
    try:
        history = clocks.history()
        await history.read(store)
        kept = []
        for day in (0, 1, 2, 3):
            clocks.now = day * DAY
            clocks.ahead = 30 * DAY if day >= 2 else 0.0
            await history.prune(
                store, sinks=("archive",), keep_s=KEEP_S, now=clocks.wall(), watched=WATCHED
            )
            kept.append(await store.outbox.counts())
    finally:
        await store.close()
    assert kept == [{"file": (3, 2)}] * 4
    assert "store.prune_clock_ahead" in [r.getMessage() for r in caplog.records]


SCHEMA_BEFORE = 28  # the last schema without the names' first-found times


async def test_a_store_from_before_the_first_found_times_keeps_its_old_backlog_a_week(
    tmp_path: Path,
) -> None:
    # An older release's store holding a sink name's backlog: its first prune after the
    # upgrade finds the name unconfigured then, and keeps what it has for a week from it.
    path = tmp_path / "r.db"
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:SCHEMA_BEFORE]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {SCHEMA_BEFORE}")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.executemany(
            "INSERT INTO events (seq, id, type, time, source, account, order_id, severity, body)"
            " VALUES (?, ?, 'order.status_changed', ?, 'ccnow', 'default', 'o', 'info', x'00')",
            [(seq, f"evt-{seq}", NOW - age) for seq, age in enumerate(AGES, 1)],
        )
        conn.executemany(
            "INSERT INTO deliveries (sink, event_seq, state) VALUES ('file', ?, ?)",
            [(seq, "dead" if seq <= 2 else "pending") for seq in range(1, 6)],
        )
    conn.close()
    store = await Store.open(path, sinks=("archive",))
    try:
        [(version,)] = await store.conn.execute_fetchall("PRAGMA user_version")
        assert version == SCHEMA_VERSION > SCHEMA_BEFORE
        assert await _gone_since(store) == {}
        report = await prune(store, sinks=("archive",), keep_s=KEEP_S, now=NOW, watched=WATCHED)
        assert report.released == 0
        assert await store.outbox.counts() == {"file": (3, 2)}
        assert await _gone_since(store) == {"file": NOW}
    finally:
        await store.close()


def _age_events(path: Path, by_s: float) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET time = time - ?", (by_s,))
    conn.close()


async def test_a_backlog_ten_days_old_at_the_rename_is_delivered_when_named_back(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The receiver down ten days, then the sink renamed by mistake: the catch-up's own prune
    # let go of the whole backlog, and the name put back delivered nothing.
    fake_ccnow.orders = dict(ORDERS)
    (tmp_path / "blocker").write_text("")  # the sink's directory is a file: `file` keeps them
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    _named(cfg, tmp_path, "file")
    first = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert first.code == 75, first.stderr
    _age_events(tmp_path / "reconciler.db", 10 * DAY)
    (tmp_path / "blocker").unlink()  # the sink could write now

    _named(cfg, tmp_path, "archive")  # the typo
    checked = await call_cli("--config", cfg, "check")
    assert checked.code == 0, checked.stderr
    (warning,) = [x for x in checked.log_lines() if x["message"] == "sinks.sink_not_configured"]
    assert warning.get("gone_since") is None  # no start or prune has found it yet
    renamed = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert renamed.code == 75, renamed.stderr
    (pruned,) = [x for x in renamed.log_lines() if x["message"] == "store.pruned"]
    assert pruned["released_deliveries"] == 0
    status = await call_cli("--config", cfg, "status", "--json")
    assert status.code == 0, status.stderr
    sinks = {s["name"]: s for s in json.loads(status.stdout)["sinks"]}
    assert sinks["file"]["backlog"] == 3 and sinks["file"]["configured"] is False

    # The hint dates the let-go a week from when the catch-up's start found the name so.
    (warning,) = [x for x in renamed.log_lines() if x["message"] == "sinks.sink_not_configured"]
    assert warning["undelivered"] == 3 and warning["gone_since"] is not None
    found = datetime.fromisoformat(str(warning["gone_since"])).timestamp()
    assert f"the oldest from {iso_time(found + 7 * DAY)[:19]}" in str(warning["hint"])  # ahead
    (said,) = [x for x in status.log_lines() if x["message"] == "sinks.sink_not_configured"]
    assert said["gone_since"] == warning["gone_since"]
    # status --json says both times too, for a script that watches the backlog.
    assert sinks["file"]["gone_since"] == warning["gone_since"]
    let_go = datetime.fromisoformat(str(sinks["file"]["let_go_at"])).timestamp()
    assert abs(let_go - (found + 7 * DAY)) < 1
    assert sinks["archive"]["gone_since"] is None and sinks["archive"]["let_go_at"] is None

    _named(cfg, tmp_path, "file")  # named back, as the hint says
    back = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "5s")
    assert back.code == 0, back.stderr
    assert _undelivered_warnings(back.log_lines()) == {}
    written = (tmp_path / "blocker" / "e.jsonl").read_text().splitlines()
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        stored = {r[0] for r in conn.execute("SELECT id FROM events")}
        assert conn.execute("SELECT count(*) FROM gone_sinks").fetchone() == (0,)
    conn.close()
    assert len(stored) == 3 and sorted(json.loads(line)["id"] for line in written) == sorted(stored)
