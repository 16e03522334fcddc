"""The scheduler only ticks coordinators: one due tick per account, CCV's heartbeat and the
CCNow pending list, each calling its account's coordinator (real APScheduler, fake clients)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from reconciler.poller.coordinator import NamedReport
from reconciler.poller.coordinators import Coordinators
from reconciler.scheduler import Scheduler
from tests.poller.conftest import CCV_IDS, World, track


async def test_each_account_is_ticked_through_its_coordinator(world: World) -> None:
    await track(world, "ccv", *CCV_IDS)
    world.ccv_client.statuses = dict.fromkeys(CCV_IDS, "New")
    world.ccnow_client.pending = {"396-10-1142"}
    coordinators = Coordinators(world.ccv.writer, {"default": world.ccv}, {"default": world.ccnow})
    passes: dict[str, NamedReport] = {}
    both = asyncio.Event()

    def on_pass(named: NamedReport) -> None:
        passes[named.name] = named
        if {"ccv/default due", "ccnow/default pending list"} <= passes.keys():
            both.set()

    scheduler = Scheduler(coordinators, on_pass=on_pass)
    scheduler.start()
    try:
        jobs = {job.id: job for job in scheduler.scheduler.get_jobs()}
        assert set(jobs) == {
            "ccnow-pending-list:default",
            "ccv-heartbeat:default",
            "due:ccv:default",
            "due:ccnow:default",
        }
        for job_id in ("due:ccv:default", "ccnow-pending-list:default"):
            jobs[job_id].modify(next_run_time=datetime.now(timezone.utc))
        await asyncio.wait_for(both.wait(), 10)
    finally:
        await scheduler.shutdown(1.0)
    assert passes["ccv/default due"].report.checked == len(CCV_IDS)
    assert passes["ccnow/default pending list"].report.checked == 1
    # Both are passes (`status`'s last pass), not a notification's checks.
    assert passes["ccv/default due"].is_pass and passes["ccnow/default pending list"].is_pass
    assert sorted(world.ccv_client.asked) == sorted(CCV_IDS)
