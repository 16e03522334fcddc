"""A daemon stopped (as by SIGTERM, in this process) while a CCV submit and a CCNow adjust wait
for the provider: the API stops taking requests, but both writes end within their timeout,
their answers recorded and their callers answered (DESIGN.md invariant 8)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

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
    read_events,
    write_config,
)
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import FakeCCNow
from tests.server.test_api import TOKEN, api_toml
from tests.writes.test_submit_crash import listening, query, submission_state

A = "396-10-1142"
ORDER = "7d0e9f52-3c1b-4a8e-9d2f-6b5a4c3d2e1f"
# The providers answer after this long, within their timeout (5 s): well past the second the
# API's requests had to answer in before.
PROVIDER_DELAY_S = 3.0


async def post(url: str, document: object) -> tuple[int, Any]:
    """POST JSON to the daemon's API on a connection of its own; return status and JSON."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http, http.post(url, json=document) as r:
        return r.status, await r.json(content_type=None)


def log_lines(tmp_path: Path) -> list[dict[str, Any]]:
    text = (tmp_path / "daemon.log").read_text()
    return [json.loads(line.lstrip("<0123456789>")) for line in text.splitlines() if line]


async def test_a_stop_lets_the_writes_sent_end_and_answers_their_callers(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    async with FakeCCVWrites() as ccv:
        cfg = write_config(tmp_path, ccv=ccv, ccnow=fake_ccnow, extra=api_toml(port))
        cfg.write_text(cfg.read_text().replace('timeout = "2s"', 'timeout = "5s"'))
        async with daemon_here(cfg) as here:
            await listening(port)
            await poll_until(lambda: A in {e["subject"] for e in read_events(tmp_path)}, 20, A)
            ccv.submit_replies = [json_reply(201, {"orderId": ORDER}, delay_s=PROVIDER_DELAY_S)]
            fake_ccnow.delay_s = PROVIDER_DELAY_S
            submit = asyncio.ensure_future(
                post(f"{api}/ccv/orders", submit_body(externalReference="shop-9"))
            )
            adjust = asyncio.ensure_future(
                post(f"{api}/ccnow/actions", {"order_id": A, "action": "adjust", "amount": "5"})
            )
            await ccv.wait_until(lambda: len(ccv.submits) == 1, 10)
            await fake_ccnow.wait_until(lambda: fake_ccnow.in_flight == 1, 10)
            here.stopping.set()  # the stop SIGTERM starts
            await poll_until(
                lambda: any(x["message"] == "daemon.stopping" for x in log_lines(tmp_path)),
                10,
                "the stop",
            )
            # A write asked for during the stop is not sent: no connection, or refused.
            try:
                late = await post(f"{api}/ccv/orders", submit_body(externalReference="shop-10"))
            except aiohttp.ClientConnectionError:
                late = None
            assert await asyncio.wait_for(here.wait(), 20) == 0
            (submit_status, submitted), (adjust_status, adjusted) = await asyncio.gather(
                submit, adjust
            )
    assert late is None or late[0] == 503, late
    assert [s["externalReference"] for s in ccv.submits] == ["shop-9"]
    # Each caller got the provider's answer, recorded before the daemon exited.
    assert (submit_status, submitted) == (201, {"orderId": ORDER})
    assert adjust_status == 202
    assert (adjusted["state"], adjusted["outcome"]) == ("done", "succeeded"), adjusted
    assert submission_state(tmp_path, "shop-9") == "succeeded"
    assert submission_state(tmp_path, "shop-10") is None
    assert query(tmp_path, "SELECT state FROM commands") == [("succeeded",)]
    assert [a for _, a, _ in fake_ccnow.actions] == ["adjust"]
    # The adjust's event went out before the stop ended; nothing became uncertain.
    types = [e["type"] for e in read_events(tmp_path)]
    assert "order.action_succeeded" in types
    assert not [t for t in types if t.endswith("uncertain")]
    waited = [x for x in log_lines(tmp_path) if x["message"] == "daemon.writes_in_flight"]
    assert [x["writes"] for x in waited] == [2]


async def test_a_stop_lets_the_queues_post_end_though_its_job_is_cancelled(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # An adjust a killed command left queued is posted by the daemon's queue job; the stop comes
    # while CCNow takes longer than the 3 s the stop gives its jobs: the post still ends, answered.
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    cfg.write_text(cfg.read_text().replace('timeout = "2s"', 'timeout = "8s"'))
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    # As a `ccnow adjust` killed after recording it leaves it: queued, not sent.
    with environ(cli_env()):
        config = load_config(cfg)
    store = await Store.open(config.store_path, sinks=sink_names(config))
    try:
        await cmds.record(store, build(config.ccnow[0], "adjust", [A], amount="5.00"), 1.0)
    finally:
        await store.close()
    # In this process, its queue read every 0.2 s (not 5 s); stopped as SIGTERM stops it (the
    # signal itself is the test above's). The adjust is held until the stop began, then CCNow
    # answers it 4 s later, past the 3 s the stop gives its jobs.
    fake_ccnow.answer_late = lambda seen: seen.form.get("x_action_1") == "adjust"
    async with daemon_here(cfg, cli_env(), ticks=Ticks(actions_s=0.2)) as running:
        await fake_ccnow.wait_until(
            lambda: any(r.form.get("x_action_1") == "adjust" for r in fake_ccnow.requests), 30
        )
        stopped = asyncio.ensure_future(running.stop())
        await poll_until(
            lambda: any(x["message"] == "daemon.stopping" for x in log_lines(tmp_path)),
            10,
            "the stop",
        )
        fake_ccnow.delay_s = 4.0
        fake_ccnow.release.set()
        assert await asyncio.wait_for(stopped, 30) == 0
    assert query(tmp_path, "SELECT state FROM commands") == [("succeeded",)]
    assert [a for _, a, _ in fake_ccnow.actions] == ["adjust"]
    types = [e["type"] for e in read_events(tmp_path)]
    assert "order.action_succeeded" in types and "order.action_uncertain" not in types
