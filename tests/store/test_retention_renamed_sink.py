"""A sink renamed in the config (a typo, `name = "archive"` for `name = "file"`) keeps its
backlog under its old name until retention would prune those events anyway: the prune run at
the end of the same `catch-up` (and seconds after the daemon's start) let go of every delivery
row of the old name, so the backlog vanished from `status` and the rename back that the warning
suggests gave nothing back. An event older than `keep_events` is still let go of: a removed sink
never holds retention back; nor, a week after it was first found unconfigured, does it keep every
catch-up at 75 (tests/store/test_retention_gone_since.py)."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path

from reconciler.events import Event
from reconciler.json_text import iso_time
from reconciler.model import EventType
from reconciler.store import Store
from reconciler.store.retention import prune
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow

DAY = 86400.0
NOW = 1_800_000_000.0
KEEP_S = 400 * DAY
WATCHED = {("ccnow", "default"): 180 * DAY}
ORDERS = {"396101142": "pending", "396101143": "pending", "396101144": "pending"}


def _named(cfg: Path, tmp_path: Path, name: str) -> None:
    """Give the config's one jsonl sink the name `name`; it writes to tmp_path/blocker/e.jsonl."""
    default = f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "events.jsonl"}"\n'
    # Retried at once: the rename back delivers within its catch-up, not 5 s later.
    sink = (
        f'[[sinks]]\nname = "{name}"\ntype = "jsonl"\nretry_min = "10ms"\nretry_max = "10ms"\n'
        f'path = "{tmp_path / "blocker" / "e.jsonl"}"\n'
    )
    text = re.sub(r'\[\[sinks\]\]\nname = "[a-z]+"\n(.*\n){4}', "", cfg.read_text())
    cfg.write_text(text.replace(default, "") + sink)


def _undelivered_warnings(lines: list[dict[str, object]]) -> dict[object, object]:
    return {
        line["sink"]: line["undelivered"]
        for line in lines
        if line["message"] == "sinks.sink_not_configured"
    }


async def test_a_renamed_sinks_backlog_stays_until_renamed_back(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = dict(ORDERS)
    (tmp_path / "blocker").write_text("")  # the sink's directory is a file: `file` keeps them
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    _named(cfg, tmp_path, "file")
    first = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert first.code == 75, first.stderr
    (tmp_path / "blocker").unlink()  # the sink could write now

    _named(cfg, tmp_path, "archive")  # the typo
    checked = await call_cli("--config", cfg, "check")
    assert checked.code == 0, checked.stderr
    assert _undelivered_warnings(checked.log_lines()) == {"file": 3}
    renamed = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert renamed.code == 75, renamed.stderr
    (warning,) = [x for x in renamed.log_lines() if x["message"] == "sinks.sink_not_configured"]
    assert warning["undelivered"] == 3 and "name = 'file'" in warning["hint"]
    found = datetime.fromisoformat(str(warning["gone_since"])).timestamp()
    assert f"the oldest from {iso_time(found + 7 * DAY)[:19]}" in warning["hint"]  # to a second
    (done,) = [x for x in renamed.log_lines() if x["message"] == "catch-up.done"]
    assert done["undelivered"] == {"file": 3}
    (pruned,) = [x for x in renamed.log_lines() if x["message"] == "store.pruned"]
    assert pruned["released_deliveries"] == 0  # the events are minutes old, not 400 days

    # Still there for `status` and for the next catch-up: nothing was let go of.
    status = await call_cli("--config", cfg, "status", "--json")
    assert status.code == 0, status.stderr
    sinks = {s["name"]: s for s in json.loads(status.stdout)["sinks"]}
    assert sinks["file"]["backlog"] == 3 and sinks["file"]["configured"] is False
    again = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert again.code == 75, again.stderr
    assert _undelivered_warnings(again.log_lines()) == {"file": 3}

    # The rename back the hint suggests delivers the backlog.
    _named(cfg, tmp_path, "file")
    back = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "5s")
    assert back.code == 0, back.stderr
    written = (tmp_path / "blocker" / "e.jsonl").read_text().splitlines()
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        stored = {r[0] for r in conn.execute("SELECT id FROM events")}
    conn.close()
    assert len(stored) == 3 and sorted(json.loads(line)["id"] for line in written) == sorted(stored)


def _event(n: int, at: float) -> Event:
    data = {"source": "ccnow", "account": "default", "order_id": f"o{n}", "status": "pending"}
    return Event(f"e-{n}", EventType.STATUS_CHANGED, at, "ccnow", "default", f"o{n}", "info", data)


# Each event: (older than the window?, the state of its row for the sink no longer configured).
_ROWS = [
    (True, "pending"),
    (True, "dead"),
    (True, "delivered"),
    (False, "pending"),
    (False, "dead"),
    (False, "delivered"),
    (False, "pending"),  # the newest, which always stays
]


async def test_only_the_old_events_of_a_sink_no_longer_configured_are_let_go_of(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.db"
    store = await Store.open(path, sinks=("log", "gone"))
    try:
        async with store.transaction():
            await store.events.add(
                [
                    _event(n, NOW - (KEEP_S + DAY if old else DAY))
                    for n, (old, _) in enumerate(_ROWS)
                ]
            )
            await store.conn.executemany(
                "UPDATE deliveries SET state = ? WHERE sink = 'gone' AND event_seq = ?",
                [(state, seq) for seq, (_, state) in enumerate(_ROWS, 1)],
            )
            await store.conn.execute("UPDATE deliveries SET state = 'delivered' WHERE sink = 'log'")
        report = await prune(store, sinks=("log",), keep_s=KEEP_S, now=NOW, watched=WATCHED)
        # The old ones are pruned whatever the removed sink made of them; `released` counts
        # those it had not got (pending or dead-lettered), which it never will.
        assert (report.events, report.released, report.kept) == (3, 2, 0)
        rows = await store.conn.execute_fetchall(
            "SELECT event_seq, state FROM deliveries WHERE sink = 'gone' ORDER BY event_seq"
        )
        assert [tuple(r) for r in rows] == [
            (seq, state) for seq, (old, state) in enumerate(_ROWS, 1) if not old
        ]
        assert await store.outbox.pending_counts() == {"gone": 2}
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT seq FROM events")] == [4, 5, 6, 7]
    conn.close()
