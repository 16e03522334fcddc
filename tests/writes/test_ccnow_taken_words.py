"""A ship sent again that CCNow refuses as not pending, its order where the ship puts it, is
done; its answer says "taken by an earlier attempt" only when an earlier post may have reached
CCNow with it (its answer lost), not after posts CCNow refused as a whole (maintenance).
Against the sandbox."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from reconciler.sandbox import CCNOW_PATH, Sandbox, SandboxOptions
from reconciler.store import Store
from tests.conftest import read_events
from tests.writes.test_ccnow_actions import ccnow, commands, make_due

# The faults of the posts before the last one, in order: "drop" applies the post and loses
# its answer; "maintenance" refuses the post as a whole.
EARLIER = {
    "maintenance-only": (["maintenance:ccnow"], "completed (already past pending"),
    "lost-then-maintenance": (["drop=1", "maintenance:ccnow"], "(taken by an earlier attempt)"),
}


@pytest.mark.parametrize(("faults", "said"), list(EARLIER.values()), ids=list(EARLIER))
async def test_a_ship_is_taken_by_an_earlier_attempt_only_after_one_that_may_have_reached_ccnow(
    tmp_path: Path, faults: list[str], said: str
) -> None:
    sandbox = Sandbox(SandboxOptions(orders=1, advance=False))
    base = await sandbox.start("127.0.0.1", 0)
    try:
        [order] = sandbox.ccnow_order_ids()
        sandbox.set_status("ccnow", order, "pending")
        cfg = tmp_path / "reconciler.toml"
        cfg.write_text(
            f'[store]\npath = "{tmp_path / "reconciler.db"}"\n'
            f'[ccnow]\nurl = "{base}{CCNOW_PATH}"\nclient_id = "sandbox"\n'
            'timeout = "2s"\nretries = 1\nretry_backoff = "10ms"\n'
            f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "events.jsonl"}"\n'
        )
        env = {"RECONCILER_CCNOW_PASSWORD": "sandbox"}
        for fault in faults:
            sandbox.set_faults(fault)
            await make_due(tmp_path)
            queued = await ccnow(cfg, "ship", order, **env)
            assert queued.code == 75, queued.stdout + queued.stderr
            assert [state for _, state, _ in commands(tmp_path)] == ["queued"]
        # Meanwhile the order leaves pending without this command (shipped in the backroom).
        sandbox.set_faults("")
        if faults == ["maintenance:ccnow"]:
            sandbox.set_status("ccnow", order, "completed")
        await make_due(tmp_path)
        again = await ccnow(cfg, "ship", order, **env)
        assert again.code == 0, again.stdout + again.stderr
        [(_, state, answer)] = commands(tmp_path)
        assert state == "succeeded" and answer is not None and said in answer, answer
        assert ("taken by an earlier attempt" in answer) == (faults[0] == "drop=1"), answer
        [event] = [e for e in read_events(tmp_path) if e["type"] == "order.action_succeeded"]
        assert event["data"]["answer"] == answer
    finally:
        await sandbox.stop()


async def test_a_command_posted_before_the_upgrade_may_have_reached_ccnow(tmp_path: Path) -> None:
    db = tmp_path / "reconciler.db"
    store = await Store.open(db)
    await store.close()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("ALTER TABLE commands DROP COLUMN maybe_reached_at")
        conn.execute("ALTER TABLE sources DROP COLUMN failed_on_own_word")  # migration 17
        conn.execute("DROP INDEX orders_settled")  # migration 18
        conn.execute("ALTER TABLE orders DROP COLUMN asked_at")  # migration 19
        conn.execute("ALTER TABLE commands DROP COLUMN held_since")  # migration 20
        conn.execute("ALTER TABLE sources DROP COLUMN backoff_from")  # migration 22
        conn.execute("DROP INDEX submissions_failed")  # migration 23
        conn.execute("ALTER TABLE submissions DROP COLUMN location")  # migration 24
        conn.execute("ALTER TABLE submissions DROP COLUMN notified_at")  # migration 25
        conn.execute("DROP INDEX submissions_live")  # migration 27, and migration 3's index back
        conn.execute("ALTER TABLE submissions DROP COLUMN superseded_at")
        conn.execute(
            "CREATE UNIQUE INDEX submissions_live ON submissions (account, external_reference) "
            "WHERE state != 'failed'"
        )
        conn.execute("DROP TABLE gone_sinks")  # migration 29
        conn.execute("DROP TRIGGER notified_orders_delete")  # migration 28
        conn.execute("DROP TABLE notified_orders")  # migration 26
        conn.execute("ALTER TABLE sources DROP COLUMN failed_on_key")  # migration 26
        conn.execute("ALTER TABLE commands DROP COLUMN withdraw_asked")  # migration 30
        conn.execute("ALTER TABLE sources DROP COLUMN rest_until")  # migration 31
        conn.execute("ALTER TABLE commands DROP COLUMN turned_away")  # migration 32
        conn.execute("ALTER TABLE commands DROP COLUMN hidden_at")  # migration 33
        conn.execute("PRAGMA user_version = 15")
        conn.executemany(
            "INSERT INTO commands (account, order_id, action, idempotency_key, state, attempts, "
            "created_at) VALUES ('default', ?, 'ship', ?, 'queued', ?, 1.0)",
            [("396-10-1142", "k1", 0), ("397-10-1159", "k2", 2)],
        )
    store = await Store.open(db)
    await store.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT attempts, maybe_reached_at FROM commands ORDER BY id")
        # Of a command posted before, nobody knows whether a post reached CCNow: it may have.
        assert rows.fetchall() == [(0, None), (2, 1.0)]
