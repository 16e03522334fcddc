"""A rest the running daemon holds for its CCNow action's status read (turned away by a 429
asking ten minutes), before any pass of the account records it, fails no pass; yet /healthz
says the account failing and not healthy, and `reconciler_source_ok` is 0, while the rest is
ahead (README "Retry-After of a read"), as `status` does (schedule.reads_failing)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from reconciler.server import Health, SourceHealth, health_document
from tests.conftest import call_cli, daemon_here, free_port, write_config
from tests.fake_providers import FakeCCNow
from tests.server.test_api import api_toml
from tests.server.test_rest_seen import ENV, SLOW, A, B, too_many
from tests.writes.test_submit_crash import listening

OK = "reconciler_source_ok"


async def seen(port: int) -> tuple[dict[str, object], float]:
    """Return CCNow's /healthz entry and its `reconciler_source_ok`."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            document = await response.json()
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    [entry] = [s for s in document["sources"] if s["source"] == "ccnow"]
    [ok] = [
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == OK
        for sample in family.samples
        if sample.labels["source"] == "ccnow"
    ]
    return entry, ok


async def test_a_rest_the_daemon_holds_reads_failing(tmp_path: Path, fake_ccnow: FakeCCNow) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    api_port, port = free_port(), free_port()
    cfg = write_config(
        tmp_path, ccnow=fake_ccnow, ccnow_extra=SLOW, extra=api_toml(api_port, receiver_port=port)
    )
    assert (await call_cli("--config", cfg, "track", "ccnow", A, B, env=ENV)).code == 0
    async with daemon_here(cfg, ENV):
        await listening(api_port)
        entry, ok = await seen(port)
        assert (entry["failing"], ok) == (False, 1)
        # The ship's answer says nothing of B: its close reads B back, and CCNow turns that away.
        fake_ccnow.actions_answer = ["message no_pending_orders"]
        fake_ccnow.reads = [too_many(600)]
        await call_cli("--config", cfg, "ccnow", "ship", B, env=ENV)
        entry, ok = await seen(port)
    assert entry["resting_until"] is not None, entry
    assert (entry["failing"], entry["healthy"], ok) == (True, False, 0), entry
    assert entry["failure_streak"] == 0  # no pass failed it: its record is as it was


def test_an_account_reads_failing_while_its_rest_is_ahead() -> None:
    now = time.time()

    def read(rest_until: float | None) -> tuple[bool, bool, bool]:
        entry = SourceHealth("ccnow", "default", now - 10, 0, False, 60.0, rest_until=rest_until)
        document, ok = health_document(Health((entry,)), now)
        [shown] = document["sources"]
        return shown["failing"], shown["healthy"], ok

    assert read(now + 300) == (True, False, False)
    assert read(None) == (False, True, True)
    assert read(now - 1) == (False, True, True)  # ended
