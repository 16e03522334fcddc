"""A damaged store as the daemon finds it: at start, one line naming the file; while it runs,
found first by the API's reads (its own read-only connection), the store is failing as when the
daemon's own statements find it (README "When the database fails"): one `store.failing` line,
then the daemon stops with 74."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from reconciler.store import Store
from tests.conftest import (
    call_cli,
    cli_env,
    daemon,
    daemon_here,
    free_port,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_providers import FakeCCV
from tests.server.test_api import RECEIVER_SECRET, TOKEN
from tests.store.test_store_faults import make_store

ORDER = "d4e5f6a7-0000-4000-8000-00000000000a"


def damage_pages(db: Path, where: str = "name = 'orders'") -> None:
    """Move what the write-ahead log holds into the file, then write over the first bytes of
    the pages `where` picks from dbstat (the orders table's) as the probe did (`0d ff ff ...`,
    a leaf page header that points past the page)."""
    # The daemon may be writing (an outbox row marked delivered): the checkpoint waits for it,
    # as long as a loaded machine may need (from a thread, when the daemon runs in this loop).
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [r[0] for r in conn.execute(f"SELECT pageno FROM dbstat WHERE {where}")]
    assert pages
    with db.open("r+b") as f:
        for page in pages:
            f.seek((page - 1) * page_size)
            f.write(b"\x0d" + b"\xff" * 7)
        f.flush()
        os.fsync(f.fileno())


@pytest.mark.parametrize(
    ("pages", "problem"),
    [
        # quick_check's report began `*** in database main ***` and a line break: the error
        # spanned lines, the advice on a line of its own, which journald splits apart.
        ("sqlite_autoindex_orders_1", "*** in database main ***\\x0aPage "),
        # A table's page the check itself could not read: no advice was given.
        ("orders", "database disk image is malformed"),
    ],
)
async def test_a_damaged_store_at_start_is_one_line_with_the_advice(
    tmp_path: Path, fake_ccv: FakeCCV, pages: str, problem: str
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    await make_store(db, 300)
    # A leaf page: the store opens, and quick_check finds it.
    damage_pages(db, f"name = '{pages}' AND pagetype = 'leaf' LIMIT 1 OFFSET 1")
    async with daemon_here(cfg) as run:
        assert await asyncio.wait_for(run.wait(), 60) == 74
    lines = (tmp_path / "daemon.log").read_text().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"reconciler: database {db} is damaged ({problem}"), lines[0]
    assert lines[0].endswith(f"recover what is readable with `sqlite3 {db} .recover`")


@pytest.mark.parametrize(
    ("pages", "path"),
    [
        ("name = 'orders'", f"/api/v1/orders/ccv/{ORDER}"),
        # Read by a statement of its own on the connection: a 500 and a traceback.
        ("name LIKE 'submissions%'", "/api/v1/ccv/submissions/INV-7?account=default"),
    ],
    ids=["order", "submission"],
)
# Bounds in this file are for a loaded machine (the suite in parallel, other jobs beside it),
# where a daemon's start takes many times its seconds alone; only the ends are asserted.
async def test_a_damaged_page_the_api_reads_stops_the_daemon_with_74(
    tmp_path: Path, fake_ccv: FakeCCV, pages: str, path: str
) -> None:
    # The API's 503 said "the database cannot be used" each time, but nothing was logged,
    # /healthz said ok and the daemon ran on (its reads went through a store whose health no
    # one watched), to exit 0 at its stop.
    api_port, receiver_port = free_port(), free_port()
    fake_ccv.orders = {ORDER: "AwaitingPayment"}
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        # Checked at start, then not for an hour: only the API reads the orders afterwards.
        ccv_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\n'
        "status_intervals = {}",
        extra=(
            f'[receiver]\nlisten = "127.0.0.1:{receiver_port}"\n'
            f'public_url = "http://127.0.0.1:{receiver_port}"\nsecret = "{RECEIVER_SECRET}"\n\n'
            f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\n'
        ),
    )
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    log = tmp_path / "daemon.log"
    db = tmp_path / "reconciler.db"
    async with daemon_here(cfg) as here, aiohttp.ClientSession() as http:
        await poll_until(lambda: here.task.done() or "daemon.ready" in log.read_text(), 60, "ready")
        assert not here.task.done(), log.read_text()
        await poll_until(lambda: read_events(tmp_path), 60, "the start-up check")
        # Off the loop: the checkpoint waits for the daemon's transaction, which needs the loop.
        await asyncio.to_thread(damage_pages, db, pages)
        async with http.get(
            f"http://127.0.0.1:{api_port}{path}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            assert resp.status == 503
            assert "the database cannot be used" in (await resp.json())["error"]
        assert await asyncio.wait_for(here.wait(), 60) == 74
    lines = log.read_text().splitlines()
    failing = [json.loads(line) for line in lines if '"store.failing"' in line]
    assert len(failing) == 1, lines
    assert failing[0]["kind"] == "corrupt" and failing[0]["store"] == str(db)
    assert "Traceback" not in log.read_text()
    assert lines[-1].startswith(f"reconciler: cannot use database {db}: "), lines[-1]


async def test_a_signal_during_the_stop_a_damaged_page_began_is_no_second_one(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The stop a damaged page starts was taken for a signal's: systemd's SIGTERM (a `systemctl
    # stop` or a logrotate's HUP meanwhile) was a second signal, daemon.force_exit and exit 1,
    # which systemd restarts, where 74 keeps the unit failed. A command sink's program under
    # way holds the stop for 2.5 s (its exit is awaited that long).
    api_port = free_port()
    fake_ccv.orders = {ORDER: "AwaitingPayment"}
    started = tmp_path / "command.started"
    slow = [sys.executable, "-c", "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch();"
            " time.sleep(30)", str(started)]  # fmt: skip
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\n'
        "status_intervals = {}",
        extra=(
            f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\n\n'
            f'[[sinks]]\ntype = "command"\nname = "slow"\ncommand = {json.dumps(slow)}\n'
        ),
    )
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    log = tmp_path / "daemon.log"
    db = tmp_path / "reconciler.db"
    async with daemon(cfg, cli_env()) as proc, aiohttp.ClientSession() as http:
        await poll_until(started.exists, 60, "the command sink's program under way")
        damage_pages(db)
        async with http.get(
            f"http://127.0.0.1:{api_port}/api/v1/orders/ccv/{ORDER}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            assert resp.status == 503
        await poll_until(lambda: "daemon.stopping" in log.read_text(), 60, "the stop")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 74, log.read_text()
    text = log.read_text()
    assert "daemon.force_exit" not in text
    assert text.index("daemon.signal") < text.index("daemon.stopped"), text
    assert text.splitlines()[-1].startswith(f"reconciler: cannot use database {db}: ")


async def test_a_busy_read_of_the_api_is_no_failure_of_the_store(tmp_path: Path) -> None:
    # The API's reads share the store's health; another process writing is a wait, not a fault.
    db = tmp_path / "reconciler.db"
    store = await Store.open(db)
    reader = await Store.open(db, readonly=True)
    try:
        reader.health = store.health
        reader.unusable(sqlite3.OperationalError("database is locked"))
        assert not store.health.failing
        reader.unusable(sqlite3.DatabaseError("database disk image is malformed"))
        assert store.health.current is not None and store.health.current.kind == "corrupt"
    finally:
        await reader.close()
        await store.close()
