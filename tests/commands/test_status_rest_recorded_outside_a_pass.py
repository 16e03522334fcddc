"""A rest recorded outside a pass (a `ccnow ship` command line whose status read CCNow turned
away, which records it as it ends) fails no pass of the account, yet the account reads failing
in `status` and `status --json` while the rest is ahead, as README "Retry-After of a read"
says, not `ok` beside a `resting_until`; no `source.failed` is stored for it (events stay the
health record's). Against a fake CCNow on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

from tests.commands.test_status_rest import set_rest, status
from tests.conftest import cli_env, run_cli
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import query, tracked

A, B = "396-10-1142", "396-10-1143"


async def test_a_rest_a_ship_command_lines_read_was_asked_reads_failing(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    accounts, _ = await status(cfg)
    assert accounts[("ccnow", "default")]["health"] == "ok"
    # The ship's answer says nothing of B: its close reads B back, and CCNow turns that away.
    fake_ccnow.actions_answer = ["message no_pending_orders"]
    fake_ccnow.reads = [Reply(429, "Too Many Requests", headers={"Retry-After": "600"})]
    shipped = await run_cli("--config", cfg, "ccnow", "ship", B, env=cli_env())
    assert shipped.code == 75, shipped.stderr
    [(failing, until)] = query(tmp_path, "SELECT failing, rest_until FROM sources")
    assert not failing and until is not None  # no pass failed it

    accounts, text = await status(cfg)
    entry = accounts[("ccnow", "default")]
    assert (entry["health"], entry["resting_until"] is not None) == ("failing", True), entry
    assert text.splitlines()[1].split()[1] == "failing", text
    assert query(tmp_path, "SELECT count(*) FROM events WHERE type = 'source.failed'") == [(0,)]

    # Once the rest is over, it reads as its record says again.
    set_rest(tmp_path, time.time() - 1)
    accounts, _ = await status(cfg)
    assert accounts[("ccnow", "default")]["health"] == "ok"
