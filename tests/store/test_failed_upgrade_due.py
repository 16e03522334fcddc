"""A CCV `Failed` order of a store from before migration 4 (when `Failed` was an end state) is
due at once after the upgrade: `orders --json` and the API show the upgrade's time as its
`next_check_at`, since when it is due, not the time it was tracked (README "The schedule": that
time is for an order not checked yet)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from reconciler.json_text import iso_time
from reconciler.store import Store
from reconciler.store.migrations import MIGRATIONS
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCV
from tests.store.test_store_upgrade import connected, make_old_store

FAILED = "0b7c1f3e-0000-4000-8000-0000000000f1"
DAY = 86400.0


async def test_a_failed_order_of_an_old_store_is_due_from_the_upgrade_not_from_its_tracking(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    make_old_store(db, version=1)
    tracked = time.time() - 3 * DAY  # within `watch_settled`: still watched
    with connected(db) as conn:
        # An old release's end state: checked, changed, no next check planned.
        conn.execute(
            "INSERT INTO orders (source, account, order_id, status, first_seen, last_changed, "
            "last_checked, end_state, version, tracked_at) "
            "VALUES ('ccv', 'default', ?, 'Failed', ?, ?, ?, 1, 1, ?)",
            (FAILED, tracked, tracked + DAY, tracked + DAY, tracked),
        )
        for number in (2, 3):
            conn.executescript(f"BEGIN; {MIGRATIONS[number - 1]}; COMMIT")
            conn.execute(f"PRAGMA user_version = {number}")

    before = time.time()
    store = await Store.open(db)  # the writer's open upgrades it, as the daemon's start does
    await store.close()
    after = time.time()

    result = await call_cli("--config", cfg, "orders", "--json")
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)
    [failed] = [r for r in rows if r["order_id"] == FAILED]
    assert failed["end_state"] is False
    due = failed["next_check_at"]
    assert due is not None
    # Due since the upgrade (ISO times of one format compare as text), not since its tracking.
    assert iso_time(before - 1) <= due <= iso_time(after + 1), (due, iso_time(tracked))
