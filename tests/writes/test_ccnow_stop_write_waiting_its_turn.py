"""A stop while the daemon's queue job has a post waiting for the account's only turn (another
post, a request's, holds it): the job is cancelled, the post is not sent and stays queued, and
the stop logs nothing at level error (an alert on it would fire on a plain restart) nor counts
that post among the writes it waits for. A fake CCNow on 127.0.0.1 holds the request's post
until the stop began."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import time
from pathlib import Path
from typing import Any

from reconciler.config import load_config
from reconciler.daemon import Ticks
from reconciler.sinks import sink_names
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_actions import build
from tests.conftest import (
    call_cli,
    cli_env,
    daemon_here,
    environ,
    free_port,
    poll_until,
    write_config,
)
from tests.fake_providers import FakeCCNow
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import query
from tests.writes.test_stop_lets_writes_end import log_lines, post
from tests.writes.test_submit_crash import listening

A, B = "396-10-1142", "397-10-1159"


def _state(tmp_path: Path, order_id: str) -> str:
    [(state,)] = query(tmp_path, "SELECT state FROM commands WHERE order_id = ?", order_id)
    return str(state)


def _make_due(tmp_path: Path, order_id: str) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db", timeout=10)) as db, db:
        db.execute("UPDATE commands SET next_attempt_at = 0 WHERE order_id = ?", (order_id,))


async def test_a_stop_leaves_a_post_waiting_for_its_turn_queued_with_no_error_line(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    port = free_port()
    cfg = write_config(
        tmp_path, ccnow=fake_ccnow, ccnow_extra="concurrency = 1", extra=api_toml(port)
    )
    cfg.write_text(cfg.read_text().replace('timeout = "2s"', 'timeout = "5s"'))
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    # A ship a killed command left queued, not due until the request's post holds the turn.
    with environ(cli_env()):
        config = load_config(cfg)
    store = await Store.open(config.store_path, sinks=sink_names(config))
    try:
        await cmds.record(store, build(config.ccnow[0], "ship", [B]), time.time() + 600)
    finally:
        await store.close()
    fake_ccnow.answer_late = lambda seen: seen.form.get("x_action_1") == "adjust"
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    try:
        async with daemon_here(cfg, cli_env(), ticks=Ticks(actions_s=0.2)) as running:
            await listening(port)
            adjust = asyncio.ensure_future(
                post(
                    f"http://127.0.0.1:{port}/api/v1/ccnow/actions",
                    {"order_id": A, "action": "adjust", "amount": "5"},
                )
            )
            await fake_ccnow.wait_until(lambda: fake_ccnow.in_flight == 1, 10)
            # Off this loop, which the daemon's own transactions need to end.
            await asyncio.to_thread(_make_due, tmp_path, B)
            # The queue job claimed it and waits for the turn the adjust's post holds.
            await poll_until(lambda: _state(tmp_path, B) == "sending", 10, "the ship claimed")
            stopped = asyncio.ensure_future(running.stop())
            await poll_until(
                lambda: any(x["message"] == "daemon.stopping" for x in log_lines(tmp_path)),
                10,
                "the stop",
            )
            fake_ccnow.release.set()
            assert await asyncio.wait_for(stopped, 30) == 0
            status, answer = await adjust
            # The write the job left is collected: an exception of it nobody took is reported.
            gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert unretrieved == []
    lines = log_lines(tmp_path)
    assert [x for x in lines if x["level"] == "error"] == []
    assert [x["writes"] for x in lines if x["message"] == "daemon.writes_in_flight"] == [1]
    assert (status, answer["state"]) == (202, "done"), answer
    assert _state(tmp_path, A) == "succeeded"
    assert _state(tmp_path, B) == "queued"
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust")]
