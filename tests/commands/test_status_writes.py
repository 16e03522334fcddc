"""`reconciler status`'s WRITES table tells a person what to do about each unsettled write, and
only what works: a submit a running daemon is still sending is waited for, not tracked by hand;
one a stopped process left `sending` is; so for CCNow actions (a killed process's adjust is
a person's, its ship is queued); CCNow actions queued under an account the config no longer
names are sent by nothing until it names the account again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.commands.status_report import gather_status
from reconciler.commands.status_text import render_text
from reconciler.config import load_config
from reconciler.sinks import sink_names
from reconciler.store import Store, WriterLock
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_actions import build
from tests.conftest import (
    call_cli,
    cli_env,
    daemon_here,
    environ,
    free_port,
    run_cli,
    write_config,
)
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import FakeCCNow, FakeCCV
from tests.server.test_api import TOKEN, api_toml
from tests.writes.test_submit_crash import listening, submit

A = "396-10-1142"


async def writes_of(cfg: Path, account: str) -> tuple[dict[str, Any], list[str]]:
    """`status --json`'s entry of an account, and its WRITES row of plain `status` (split on
    runs of spaces: the columns, then the to-do)."""
    found = json.loads((await call_cli("--config", cfg, "status", "--json")).stdout)
    (entry,) = [a for a in found["accounts"] if f"{a['source']}/{a['account']}" == account]
    return entry, writes_row((await call_cli("--config", cfg, "status")).stdout, account)


def writes_row(text: str, account: str) -> list[str]:
    """An account's WRITES row of plain `status`, split as `writes_of` splits it."""
    table = next(t for t in text.split("\n\n") if t.startswith("WRITES"))
    head, *rows = table.splitlines()
    assert head.split()[:5] == ["WRITES", "UNCERTAIN", "SENDING", "QUEUED", "TO"]
    row = next(r for r in rows if r.startswith(account + " "))
    return row.split(maxsplit=4)


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
    assert (entry["uncertain_of"], entry["sending_of"]) == ([], ["S-1"])  # as the text names it
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
    assert (entry["uncertain_of"], entry["sending_of"]) == (["S-2"], [])  # to look up at CCV
    assert row[1:4] == ["1", "0", "0"]
    assert "(S-2)" in row[4] and "`reconciler track ccv ID --ref REF`" in row[4]


async def test_status_json_names_every_uncertain_submit_the_text_names_a_few_of(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # Probe 34 item 2: `--json` counted them and named none; a script settling them had to
    # read the text's WRITES table, which names 5.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    refs = [f"S-{n}" for n in range(1, 8)]
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.executemany(
            "INSERT INTO submissions (account, external_reference, state, created_at) "
            "VALUES ('default', ?, 'uncertain', 1.0)",
            [(ref,) for ref in refs],
        )
    entry, row = await writes_of(cfg, "ccv/default")
    assert (entry["uncertain_writes"], entry["uncertain_of"]) == (7, refs)
    assert "(S-1, S-2, S-3, S-4, S-5 and 2 more)" in row[4]


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


@pytest.mark.parametrize("uncertain", [(), ("S-1",)])
async def test_a_submit_recorded_while_status_reads_is_counted_whole_or_not_at_all(
    tmp_path: Path, fake_ccv: FakeCCV, uncertain: tuple[str, ...]
) -> None:
    # The daemon records a submit (a real second connection) just as `status` reads the submits
    # left `sending`, after it counted the unsettled ones.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    db = tmp_path / "reconciler.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany(
            "INSERT INTO submissions (account, external_reference, state, created_at) "
            "VALUES ('default', ?, 'uncertain', 1.0)",
            [(ref,) for ref in uncertain],
        )
    with environ(cli_env()):
        config = load_config(cfg)
    daemon = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    recorded: list[str] = []

    def meanwhile(sql: str) -> None:
        if "state = 'sending'" in sql and not recorded:
            recorded.append(sql)
            daemon.execute(
                "INSERT INTO submissions (account, external_reference, state, created_at) "
                "VALUES ('default', 'S-9', 'sending', 2.0)"
            )

    lock = WriterLock(db)
    lock.acquire()  # the daemon's: S-9 is its to answer
    store = await Store.open(db, readonly=True)
    try:
        await store.conn.set_trace_callback(meanwhile)
        during = await gather_status(config, store, time.time())
        after = await gather_status(config, store, time.time())
    finally:
        await store.close()
        lock.release()
        daemon.close()
    assert recorded
    (a,) = [a for a in during.accounts if a.account == "default"]
    assert (a.uncertain_writes, a.uncertain_of, a.sending_of) == (len(uncertain), uncertain, ())
    (a,) = [a for a in after.accounts if a.account == "default"]
    assert (a.uncertain_writes, a.uncertain_of, a.sending_of) == (
        len(uncertain),
        uncertain,
        ("S-9",),
    )
    row = writes_row(render_text(after, colour=False), "ccv/default")
    assert row[1:3] == [str(len(uncertain)), "1"]
    assert "being sent (S-9)" in row[4]
    assert ("(S-1)" in row[4]) is bool(uncertain)


async def test_a_ccnow_action_a_running_daemon_is_posting_is_being_sent(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    fake_ccnow.hold = asyncio.Event()  # CCNow takes its time to answer

    def posted() -> bool:
        return any(r.form.get("x_action_1") == "ship" for r in fake_ccnow.requests)

    async with daemon_here(cfg), aiohttp.ClientSession() as http:
        await listening(port)
        pending = asyncio.ensure_future(
            http.post(
                f"http://127.0.0.1:{port}/api/v1/ccnow/actions",
                json={"order_id": A, "action": "ship"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        )
        await fake_ccnow.wait_until(posted, 10)
        entry, row = await writes_of(cfg, "ccnow/default")
        fake_ccnow.hold.set()
        async with await pending as answer:
            assert answer.status == 202
    assert (entry["sending_writes"], entry["queued_writes"]) == (1, 0)
    assert (entry["uncertain_of"], entry["sending_of"]) == ([], [A])
    assert row[1:4] == ["0", "1", "0"]
    assert f"being sent ({A}): the running reconciler records CCNow's answer" in row[4]
    assert "the daemon sends them" not in row[4]


@pytest.mark.parametrize(
    ("action", "counts"),
    # A killed process's adjust becomes uncertain at the next writer's start; a ship is
    # queued again (and sent).
    [("adjust", ["1", "0", "0"]), ("ship", ["0", "0", "1"])],
)
async def test_a_ccnow_action_a_killed_process_left_sending_shows_what_becomes_of_it(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, counts: list[str]
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    extra = ["--amount", "5"] if action == "adjust" else []
    # A process: the failpoint kills it (SIGKILL) mid-write.
    killed = await run_cli(
        "--config",
        cfg,
        "ccnow",
        action,
        A,
        *extra,
        env=cli_env(RECONCILER_FAILPOINT="ccnow.sending"),
    )
    assert killed.code == -9
    entry, row = await writes_of(cfg, "ccnow/default")
    assert row[1:4] == counts
    assert entry["sending_writes"] == 0
    assert entry["sending_of"] == []
    assert entry["uncertain_of"] == ([A] if action == "adjust" else [])
    if action == "adjust":
        assert entry["uncertain_writes"] == 1
        assert f"({A})" in row[4] and "ccnow resolve ID --sent|--not-sent" in row[4]
    else:
        assert "queued: the daemon sends them" in row[4]
