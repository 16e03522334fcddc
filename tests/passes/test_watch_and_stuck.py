"""Where the config running now decides, not what was stored under an older one: a settled order
past its `watch_settled` is never checked again (nor counted due), and an order counts as stuck
only while its status has a `stuck_after` now that it has spent."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import AlertsConfig, Config, load_config
from reconciler.daemon import Daemon
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.reconcile import Reconciler
from reconciler.runtime import Runtime
from reconciler.store import Store
from reconciler.systemd import Notifier
from tests.conftest import Clock, call_cli, write_config
from tests.fake_providers import CCV_KEY, SCHEDULE, FakeCCV, Reply, ccv_config

DAY = 86400.0
ORDERS = [f"5e77a11c-0000-4000-8000-{i:012d}" for i in range(3)]


def _db(tmp_path: Path, *statements: str) -> None:
    """Give the store a shape that takes days to reach in real life."""
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        for sql in statements:
            conn.execute(sql)
    conn.close()


async def _json(cfg: Path, *args: str) -> Any:
    result = await call_cli("--config", cfg, *args, "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


async def test_a_shortened_watch_settled_leaves_no_check_due_shown_or_made(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three CCV orders `Failed` two days ago, each with its daily check stored (planned under
    # the default watch of 180 days) and due now; the config then shortened the watch to a day.
    fake_ccv.orders = dict.fromkeys(ORDERS, "Failed")
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra='watch_settled = "1d"')
    assert (await call_cli("--config", cfg, "track", "ccv", *ORDERS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    now = time.time()
    _db(
        tmp_path,
        f"UPDATE orders SET last_changed = {now - 2 * DAY}, next_check_at = {now - 60}",
        # One of them moved to `Failed` an hour ago: still watched, so due.
        f"UPDATE orders SET last_changed = {now - 3600} WHERE order_id = '{ORDERS[0]}'",
    )
    asked = len(fake_ccv.requests)

    status = await _json(cfg, "status")
    assert status["accounts"][0]["due"] == 1  # was 3: the unwatched two counted due
    shown = {o["order_id"]: o["next_check_at"] for o in await _json(cfg, "orders")}
    assert shown[ORDERS[1]] is None and shown[ORDERS[2]] is None  # never checked again
    assert shown[ORDERS[0]] is not None

    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(cfg)
    async with Runtime(config) as rt:
        await rt.coordinators.ccv["default"].tick_due()
    # The daemon's tick asked the watched order alone.
    assert [seen.order_id for seen in fake_ccv.requests[asked:]] == [ORDERS[0]]


async def test_a_watch_settled_of_0_checks_a_settled_order_no_more(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # `watch_settled = 0` (README "The schedule"): a settled status is taken as final, as an end
    # state is. The check that finds an order `Failed` is its last; one still open is polled.
    fake_ccv.orders = {ORDERS[0]: "Failed", ORDERS[1]: "AwaitingPayment"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra="watch_settled = 0")
    assert (await call_cli("--config", cfg, "track", "ccv", *ORDERS[:2])).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    shown = {o["order_id"]: o for o in await _json(cfg, "orders")}
    assert shown[ORDERS[0]]["status"] == "Failed"
    assert shown[ORDERS[0]]["next_check_at"] is None  # never checked again
    assert shown[ORDERS[1]]["next_check_at"] is not None
    _db(tmp_path, f"UPDATE orders SET next_check_at = {time.time() - 60}")
    assert (await _json(cfg, "status"))["accounts"][0]["due"] == 1
    asked = len(fake_ccv.requests)
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    assert [seen.order_id for seen in fake_ccv.requests[asked:]] == [ORDERS[1]]


async def test_the_stuck_gauge_and_status_follow_the_stuck_after_running_now(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three orders reported stuck in AwaitingPayment (limit 2d by default) three days ago...
    # one of them moved to Processing (limit 1d) six hours ago and was reported stuck there
    # under a limit since raised.
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    fake_ccv.orders = dict.fromkeys(ORDERS, "AwaitingPayment")
    fake_ccv.orders[ORDERS[2]] = "Processing"
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *ORDERS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    now = time.time()
    _db(
        tmp_path,
        f"UPDATE orders SET stuck_version = version, last_changed = {now - 3 * DAY}",
        f"UPDATE orders SET last_changed = {now - 6 * 3600} WHERE order_id = '{ORDERS[2]}'",
    )

    async def stuck(extra: str) -> tuple[float | None, int]:
        cfg = write_config(tmp_path, ccv=fake_ccv, extra=extra)
        config = load_config(cfg)
        async with Runtime(config) as rt:
            daemon = Daemon(config, rt, Notifier(None))
            await daemon.hub.refresh_metrics()
            gauge = daemon.metrics.registry.get_sample_value(
                "reconciler_stuck_orders", {"source": "ccv", "account": "default"}
            )
        return gauge, (await _json(cfg, "status"))["accounts"][0]["stuck"]

    # The defaults: both AwaitingPayment orders; Processing's six hours are short of its day.
    assert await stuck("") == (2, 2)
    # 0 switches the alert off for that status: nothing is stuck any more (was 3 and 3).
    off = '[alerts.stuck_after.ccv]\nAwaitingPayment = "0"\nProcessing = "0"\n'
    assert await stuck(off) == (0, 0)
    # A limit raised past the time spent: not stuck; lowered to it: stuck.
    raised = '[alerts.stuck_after.ccv]\nAwaitingPayment = "4d"\nProcessing = "5h"\n'
    assert await stuck(raised) == (1, 1)
    # One whose checks fail since its report is not stuck (as `order.stuck` has it): its
    # status is only the last one answered.
    _db(tmp_path, f"UPDATE orders SET failure_streak = 1 WHERE order_id = '{ORDERS[0]}'")
    assert await stuck("") == (1, 1)  # was 2 and 2


@pytest.mark.parametrize(
    "answer",
    [Reply(403, "Forbidden"), Reply(404, json.dumps({"message": "Not found"}), "application/json")],
    ids=["check fails", "not found"],
)
async def test_an_order_whose_checks_fail_or_that_ccv_no_longer_knows_is_not_reported_stuck(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch, answer: Reply
) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    fake_ccv.orders = dict.fromkeys(ORDERS, "AwaitingPayment")
    config = load_config(
        write_config(tmp_path, ccv=fake_ccv, extra='[alerts.stuck_after.ccv]\nNew = "1h"\n')
    )
    async with Runtime(config) as rt:
        await rt.store.orders.track("ccv", "default", [(ORDERS[0], None)], time.time())
        coordinator = rt.coordinators.ccv["default"]
        # Seen in AwaitingPayment three days ago (limit 2d); today CCV refuses, or says it
        # does not know the order (within the confirmation window: no order.not_found yet).
        rt.reconciler.clock = lambda: time.time() - 3 * DAY
        await coordinator.check([ORDERS[0]], via="poll")
        rt.reconciler.clock = time.time
        fake_ccv.replies[ORDERS[0]] = answer
        await coordinator.check([ORDERS[0]], via="poll")
        types = [r[0] for r in await rt.store.conn.execute_fetchall("SELECT type FROM events")]
    assert "order.stuck" not in types
    assert types == ["order.discovered"]


async def test_check_refuses_an_interval_for_a_settled_status(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # `check` said "config ok", and the interval did nothing: schedule.plan follows
    # settled_interval for settled orders.
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra="status_intervals = { Failed = '1h' }")
    result = await call_cli("--config", cfg, "check")
    assert result.code == 78
    assert "ccv.status_intervals.Failed" in result.stderr
    assert "settled_interval" in result.stderr


async def test_an_order_is_checked_when_it_would_become_stuck_not_a_pinned_interval_later(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # Processing pinned at 6h with a 1h stuck_after: its `order.stuck` waited for the check
    # 6 h after its change, 5 h late (and status STUCK and the gauge with it).
    fake_ccv.orders = {ORDERS[0]: "Processing"}
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='status_intervals = { Processing = "6h" }',
        extra='[alerts.stuck_after.ccv]\nProcessing = "1h"\n',
    )
    assert (await call_cli("--config", cfg, "track", "ccv", ORDERS[0])).code == 0
    before = time.time()
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    [order] = await _json(cfg, "orders")
    assert order["status"] == "Processing"
    # `Z` spelled out: Python 3.10's fromisoformat does not read it.
    changed = datetime.fromisoformat(order["last_changed"].replace("Z", "+00:00")).timestamp()
    planned = datetime.fromisoformat(order["next_check_at"].replace("Z", "+00:00")).timestamp()
    # At the deadline, or after it by its jitter: 10 % of min_interval (1m) at most.
    assert changed >= before - 1 and changed + 3600 - 0.01 <= planned <= changed + 3606 + 0.01


async def test_an_order_is_checked_when_it_would_become_stuck_under_a_config_built_in_code(
    tmp_path: Path,
) -> None:
    # The limits were copied into each account's schedule by the config loader alone: a Config
    # built otherwise (`demo`, a test's) raised `order.stuck` at the check after the limit only,
    # here the 6 h pin after it became Processing, 5 h late.
    schedule = replace(SCHEDULE, status_intervals_s={"Processing": 6 * 3600.0})
    config = Config(
        file="in code",
        store_path=tmp_path / "reconciler.db",
        ccv=(ccv_config("http://127.0.0.1:9", schedule=schedule),),
        ccnow=(),
        receiver=None,
        sinks=(),
        alerts=AlertsConfig({("ccv", "Processing"): 3600.0}),
    )
    key = OrderKey("ccv", "default", ORDERS[0])
    clock = Clock()
    store = await Store.open(config.store_path)
    try:
        await store.orders.track("ccv", "default", [(key.order_id, None)], clock.now)
        reconciler = Reconciler(config, store, clock=clock)
        await reconciler.apply([Observation(key, Outcome.OK, "Processing")], via="poll")
        [order] = (await store.orders.load([key])).values()
    finally:
        await store.close()
    assert order.last_changed == clock.now
    spread = 0.1 * schedule.min_interval_s  # its jitter
    assert clock.now + 3600 <= order.next_check_at <= clock.now + 3600 + spread
