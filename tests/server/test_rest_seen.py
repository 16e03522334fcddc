"""An account resting at its provider's word (a 429 or 503 whose Retry-After asks longer than a
request's retries wait) as an operator sees it: /healthz's `resting_until` and /metrics'
`reconciler_source_rest_until_timestamp_seconds`, per account, while the rest is still ahead;
the existing fields keep their meaning (README "Retry-After of a read")."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from reconciler.daemon import Ticks
from reconciler.schedule import MAX_REST_S
from reconciler.server import Health, SourceHealth, health_document
from tests.conftest import call_cli, cli_env, daemon_here, free_port, poll_until, write_config
from tests.fake_providers import FakeCCNow, FakeCCV, Reply
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import START_UP_PASS_S
from tests.writes.test_submit_crash import listening

# Long intervals: only the start-up pass and what the test asks read the accounts.
SLOW = 'poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\nstatus_intervals = {}'
ENV = cli_env(RECONCILER_RECEIVER_SECRET="receiver-secret-0123456789abcdef")
GAUGE = "reconciler_source_rest_until_timestamp_seconds"
A, B = "396-10-1142", "396-10-1143"


def too_many(seconds: int) -> Reply:
    return Reply(429, "Too Many Requests", headers={"Retry-After": str(seconds)})


def receiver(port: int) -> str:
    return f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'


async def seen(
    port: int,
) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str], float]]:
    """Return /healthz's entry and the rest gauge of each account, by (source, account)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            document = await response.json()
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    entries = {(s["source"], s["account"]): s for s in document["sources"]}
    gauges = {
        (sample.labels["source"], sample.labels["account"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == GAUGE
        for sample in family.samples
    }
    return entries, gauges


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_healthz_and_metrics_say_until_when_an_account_rests(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    """The start-up pass's pending list is turned away for ten minutes: CCNow rests until then,
    CCV (answering) does not; CCNow still reads failing, as before."""
    fake_ccnow.script = [too_many(600)]
    port = free_port()
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccnow=fake_ccnow,
        ccv_extra=SLOW,
        ccnow_extra=SLOW,
        extra=receiver(port),
    )
    log = tmp_path / "daemon.log"
    before = time.time()
    async with daemon_here(cfg, ENV) as run:
        await poll_until(lambda: "daemon.ready" in log.read_text() or run.task.done(), 20, "ready")
        entries, gauges = await seen(port)
        after = time.time()
        assert await run.stop() == 0, log.read_text()[-2000:]
    ccnow, ccv = entries[("ccnow", "default")], entries[("ccv", "default")]
    assert ccnow["resting_until"] is not None, ccnow
    until = epoch(ccnow["resting_until"])
    assert before + 600 - 0.01 <= until <= after + 600
    assert ccnow["failing"] and not ccnow["healthy"]  # their meaning kept
    assert ccv["resting_until"] is None and ccv["healthy"]
    assert abs(gauges[("ccnow", "default")] - until) < 0.01
    assert gauges[("ccv", "default")] == 0


async def test_a_rest_the_daemons_action_was_asked_shows_at_once(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    """A ship through the running daemon whose status read CCNow turns away: the daemon holds
    the rest from then on, and /healthz and /metrics say so, not only after a pass of the
    account (an hour away here) has recorded it."""
    fake_ccnow.orders = {A: "pending", B: "pending"}
    api_port, port = free_port(), free_port()
    cfg = write_config(
        tmp_path, ccnow=fake_ccnow, ccnow_extra=SLOW, extra=api_toml(api_port, receiver_port=port)
    )
    assert (await call_cli("--config", cfg, "track", "ccnow", A, B, env=ENV)).code == 0
    log = tmp_path / "daemon.log"
    async with daemon_here(cfg, ENV, ticks=Ticks(ready_s=START_UP_PASS_S + 30)) as run:
        await listening(api_port)
        # Its start-up pass over: its query of A and B is not the one CCNow turns away.
        await poll_until(
            lambda: "daemon.ready" in log.read_text() or run.task.done(),
            START_UP_PASS_S,
            "the daemon's start-up pass",
        )
        entries, gauges = await seen(port)
        assert entries[("ccnow", "default")]["resting_until"] is None
        assert gauges[("ccnow", "default")] == 0
        # The ship's answer says nothing of B: its close reads B back, and CCNow turns that away.
        fake_ccnow.actions_answer = ["message no_pending_orders"]
        fake_ccnow.reads = [too_many(600)]
        before = time.time()
        await call_cli("--config", cfg, "ccnow", "ship", B, env=ENV)
        forms = [seen.form for seen in fake_ccnow.requests]
        assert [form.get("x_action_1", "query") for form in forms[-2:]] == ["ship", "query"]
        entries, gauges = await seen(port)
        after = time.time()
    resting = entries[("ccnow", "default")]["resting_until"]
    assert resting is not None and before + 600 - 0.01 <= epoch(resting) <= after + 600
    assert abs(gauges[("ccnow", "default")] - epoch(resting)) < 0.01


def test_only_a_rest_still_ahead_is_shown() -> None:
    """An ended rest, and one ending further than the bound ahead (recorded while the clock was
    ahead: void, schedule.held_rest), show none; /healthz's other fields are as they were."""
    now = 1_800_000_000.0

    def shown(rest_until: float | None) -> Any:
        entry = SourceHealth("ccnow", "default", now - 10, 1, True, 60.0, rest_until=rest_until)
        document, ok = health_document(Health((entry,)), now)
        assert not ok and document["sources"][0]["failing"]
        return document["sources"][0]["resting_until"]

    assert shown(now + 300) == "2027-01-15T08:05:00.000Z"
    assert shown(None) is None
    assert shown(now) is None  # ended
    assert shown(now - 300) is None
    assert shown(now + MAX_REST_S + 1) is None  # void
