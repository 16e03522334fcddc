"""`reconciler status`'s WRITES table tells a person what to do about each unsettled write, and
only what works: a submit a running daemon is still sending is waited for, not tracked by hand;
one a stopped process left `sending` is; CCNow actions queued under an account the config no
longer names are sent by nothing until it names the account again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from reconciler.config import load_config
from reconciler.delivery import sink_names
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_actions import build
from tests.conftest import call_cli, cli_env, daemon_here, environ, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import FakeCCNow, FakeCCV
from tests.server.test_api import api_toml
from tests.writes.test_submit_crash import listening, submit

A = "396-10-1142"


async def writes_of(cfg: Path, account: str) -> tuple[dict[str, Any], list[str]]:
    """`status --json`'s entry of an account, and its WRITES row of plain `status` (split on
    runs of spaces: the columns, then the to-do)."""
    found = json.loads((await call_cli("--config", cfg, "status", "--json")).stdout)
    (entry,) = [a for a in found["accounts"] if f"{a['source']}/{a['account']}" == account]
    text = (await call_cli("--config", cfg, "status")).stdout.split("\n\n")
    table = next(t for t in text if t.startswith("WRITES"))
    head, *rows = table.splitlines()
    assert head.split()[:5] == ["WRITES", "UNCERTAIN", "SENDING", "QUEUED", "TO"]
    row = next(r for r in rows if r.startswith(account + " "))
    return entry, row.split(maxsplit=4)


async def test_a_submit_a_running_daemon_is_sending_is_not_for_a_person(tmp_path: Path) -> None:
    port = free_port()
    async with FakeCCVWrites() as ccv:
        cfg = write_config(tmp_path, ccv=ccv, extra=api_toml(port))
        ccv.submit_hold = asyncio.Event()  # CCV takes its time to answer
        async with daemon_here(cfg):
            await listening(port)
            pending = asyncio.ensure_future(submit(port, submit_body(externalReference="S-1")))
            await ccv.wait_until(lambda: len(ccv.submits) == 1, 10)
            entry, row = await writes_of(cfg, "ccv/default")
            ccv.submit_hold.set()
            status, _ = await pending
    assert status == 201
    assert (entry["uncertain_writes"], entry["sending_writes"]) == (0, 1)
    assert row[1:4] == ["0", "1", "0"]
    assert "being sent (S-1)" in row[4] and "--ref" not in row[4]


async def test_a_submit_a_stopped_process_left_sending_is_for_a_person(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # As a `ccv submit` killed while CCV had its request leaves it; its lock went with it.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute(
            "INSERT INTO submissions (account, external_reference, state, created_at) "
            "VALUES ('default', 'S-2', 'sending', 1.0)"
        )
    entry, row = await writes_of(cfg, "ccv/default")
    assert (entry["uncertain_writes"], entry["sending_writes"]) == (1, 0)
    assert row[1:4] == ["1", "0", "0"]
    assert "(S-2)" in row[4] and "`reconciler track ccv ID --ref REF`" in row[4]


async def test_actions_queued_under_an_account_no_longer_named_are_sent_by_nothing(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    with environ(cli_env()):
        config = load_config(cfg)
    store = await Store.open(config.store_path, sinks=sink_names(config))
    try:  # as a `ccnow ship` that found CCNow down leaves it
        await cmds.record(store, build(config.ccnow[0], "ship", [A]), 1.0)
    finally:
        await store.close()
    write_config(tmp_path, ccv=fake_ccv)  # the [ccnow] table removed
    entry, row = await writes_of(cfg, "ccnow/default")
    assert (entry["configured"], entry["queued_writes"]) == (False, 1)
    assert row[1:4] == ["0", "0", "1"]
    assert "the daemon sends them" not in row[4]
    assert "name it again, with its credentials" in row[4]
    # Named again, the daemon's queue would send it: the plain instruction comes back.
    write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    _, row = await writes_of(cfg, "ccnow/default")
    assert "queued: the daemon sends them" in row[4]
