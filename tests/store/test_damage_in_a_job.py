"""A damaged page a daemon job's own read finds (not one of the store's guarded methods: the
CCNow actions' queue read, through the commands_open index) is the store failing, as README
"When the database fails" says: one `store.failing` line, then the daemon stops with 74."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from reconciler.daemon import Ticks
from tests.conftest import daemon_here, poll_until, write_config
from tests.fake_providers import FakeCCNow
from tests.store.test_damage_found import damage_pages


async def test_a_damaged_index_a_job_reads_stops_the_daemon_with_74(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    db, log = tmp_path / "reconciler.db", tmp_path / "daemon.log"
    async with daemon_here(cfg, ticks=Ticks(actions_s=0.2)) as running:
        await poll_until(lambda: log.exists() and "daemon.ready" in log.read_text(), 20, "ready")
        # Off the loop: the checkpoint waits for the daemon's transaction, which needs the loop.
        await asyncio.to_thread(damage_pages, db, "name = 'commands_open'")
        assert await asyncio.wait_for(running.wait(), 20) == 74, log.read_text()
    text = log.read_text()
    failing = [json.loads(line) for line in text.splitlines() if '"store.failing"' in line]
    assert len(failing) == 1, text
    assert failing[0]["kind"] == "corrupt" and failing[0]["store"] == str(db)
    assert "Traceback" not in text and "job.failed" not in text, text
    assert text.splitlines()[-1].startswith(f"reconciler: cannot use database {db}: "), text
