"""Prometheus metrics: names, labels, gauges that forget what vanished, and what the daemon
feeds them from a real store."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.daemon import Daemon
from reconciler.events import Event
from reconciler.metrics import Metrics
from reconciler.model import EventType, Observation, OrderKey, Outcome
from reconciler.runtime import Runtime
from reconciler.store import Store
from reconciler.store.events import DEAD_LETTERS_SQL
from reconciler.store.order_sql import FAILING_SQL, STUCK_SQL
from reconciler.systemd import Notifier
from tests.conftest import write_config
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV, Reply


def _obs(order_id: str, outcome: Outcome, reason: str | None = None) -> Observation:
    status = "Processing" if outcome is Outcome.OK else None
    return Observation(OrderKey("ccv", "default", order_id), outcome, status, reason=reason)


def _event(kind: EventType) -> Event:
    return Event("id", kind, 0.0, "ccv", "default", "O-1", "info", {})


def test_checks_are_counted_by_outcome_and_failures_by_reason() -> None:
    metrics = Metrics()
    metrics.observe_checks(
        "ccv",
        "default",
        [
            _obs("O-1", Outcome.OK),
            _obs("O-2", Outcome.OK),
            _obs("O-3", Outcome.NOT_FOUND),
            _obs("O-4", Outcome.FAILED, "timeout"),
            _obs("O-5", Outcome.FAILED, "timeout"),
            _obs("O-6", Outcome.FAILED),
        ],
    )
    metrics.observe_checks("ccv", "default", [_obs("O-1", Outcome.OK)])
    # A "not found" is counted once the write has judged it, there alone: O-3 once.
    metrics.observe_not_found([_obs("O-3", Outcome.NOT_FOUND), _obs("O-1", Outcome.OK)], ())
    value = metrics.registry.get_sample_value
    labels = {"source": "ccv", "account": "default"}
    assert value("reconciler_checks_total", {**labels, "outcome": "ok"}) == 3
    assert value("reconciler_checks_total", {**labels, "outcome": "not_found"}) == 1
    assert value("reconciler_checks_total", {**labels, "outcome": "failed"}) == 3
    assert value("reconciler_check_failures_total", {**labels, "reason": "timeout"}) == 2
    assert value("reconciler_check_failures_total", {**labels, "reason": "unknown"}) == 1


def test_events_are_counted_by_type() -> None:
    metrics = Metrics()
    metrics.observe_events(
        [
            _event(EventType.STATUS_CHANGED),
            _event(EventType.STATUS_CHANGED),
            _event(EventType.STUCK),
        ]
    )
    value = metrics.registry.get_sample_value
    assert value("reconciler_events_total", {"type": "order.status_changed"}) == 2
    assert value("reconciler_events_total", {"type": "order.stuck"}) == 1


def test_followed_orders_forget_statuses_nobody_is_in_any_more() -> None:
    metrics = Metrics()
    accounts = {("ccv", "default"), ("ccnow", "shop")}
    metrics.set_followed(
        {("ccv", "default", "Processing"): 3, ("ccnow", "shop", None): 2}, accounts=accounts
    )
    metrics.set_followed({("ccv", "default", "Completed"): 3}, accounts=accounts)
    value = metrics.registry.get_sample_value
    assert (
        value(
            "reconciler_followed_orders",
            {"source": "ccv", "account": "default", "status": "Completed"},
        )
        == 3
    )
    assert (
        value(
            "reconciler_followed_orders",
            {"source": "ccv", "account": "default", "status": "Processing"},
        )
        is None
    )
    metrics.set_followed({("ccnow", "shop", None): 2}, accounts=accounts)
    assert (
        value(
            "reconciler_followed_orders",
            {"source": "ccnow", "account": "shop", "status": "unknown"},
        )
        == 2
    )


def test_last_success_and_backlog() -> None:
    metrics = Metrics()
    metrics.set_last_success("ccv", "default", 1_800_000_000.5)
    metrics.set_last_success("ccnow", "shop", None)
    metrics.set_outbox_backlog({"log": 0, "hook": 7})
    metrics.set_outbox_backlog({"hook": 2})
    value = metrics.registry.get_sample_value
    name = "reconciler_last_success_timestamp_seconds"
    assert value(name, {"source": "ccv", "account": "default"}) == 1_800_000_000.5
    assert value(name, {"source": "ccnow", "account": "shop"}) == 0
    assert value("reconciler_outbox_backlog", {"sink": "hook"}) == 2
    assert value("reconciler_outbox_backlog", {"sink": "log"}) is None


def test_notification_latency_histogram() -> None:
    metrics = Metrics()
    metrics.observe_notification_latency("ccv", 0.3)
    metrics.observe_notification_latency("ccv", 7.0)
    value = metrics.registry.get_sample_value
    name = "reconciler_notification_latency_seconds"
    assert value(f"{name}_count", {"source": "ccv"}) == 2
    assert value(f"{name}_bucket", {"source": "ccv", "le": "0.5"}) == 1
    assert value(f"{name}_bucket", {"source": "ccv", "le": "10.0"}) == 2


def test_each_instance_has_its_own_registry_and_renders_text() -> None:
    first, second = Metrics(), Metrics()
    first.observe_events([_event(EventType.DISCOVERED)])
    body, content_type = second.render()
    assert content_type.startswith("text/plain")
    assert b'reconciler_events_total{type="order.discovered"}' not in body
    body, _ = first.render()
    assert b'reconciler_events_total{type="order.discovered"} 1.0' in body


def test_dead_letters_pass_duration_source_health_stuck_and_poll_interval() -> None:
    metrics = Metrics()
    metrics.set_dead_letters({"hook": 3, "log": 0})
    metrics.set_dead_letters({"hook": 1})
    metrics.observe_pass("ccv", "default", "poll", 0.2)
    metrics.observe_pass("ccv", "default", "poll", 40.0)
    metrics.set_source("ccv", "default", failing=True, poll_interval_s=300)
    metrics.set_source("ccnow", "shop", failing=False, poll_interval_s=120)
    metrics.set_stuck({("ccv", "default"): 4})
    metrics.set_stuck({("ccv", "default"): 2})
    value = metrics.registry.get_sample_value
    ccv, shop = {"source": "ccv", "account": "default"}, {"source": "ccnow", "account": "shop"}
    assert value("reconciler_dead_letters", {"sink": "hook"}) == 1
    assert value("reconciler_dead_letters", {"sink": "log"}) is None
    passes = "reconciler_pass_duration_seconds"
    assert value(f"{passes}_count", {**ccv, "via": "poll"}) == 2
    assert value(f"{passes}_bucket", {**ccv, "via": "poll", "le": "0.5"}) == 1
    assert value(f"{passes}_bucket", {**ccv, "via": "poll", "le": "60.0"}) == 2
    assert value("reconciler_source_ok", ccv) == 0
    assert value("reconciler_source_ok", shop) == 1
    assert value("reconciler_poll_interval_seconds", ccv) == 300
    assert value("reconciler_poll_interval_seconds", shop) == 120
    assert value("reconciler_stuck_orders", ccv) == 2


async def test_followed_orders_fold_undocumented_words_and_leave_out_unnamed_accounts(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A provider answering a word of its own per order (or any text) made a series each, with
    # that text as a label; the orders of an account the config no longer names stayed.
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(write_config(tmp_path, ccv=fake_ccv))
    orders = [f"7e57a11c-0000-4000-8000-{n:012d}" for n in range(1, 6)]
    fake_ccv.orders = {o: f"Weird{n}" for n, o in enumerate(orders[:3])}
    fake_ccv.orders[orders[3]] = 'Q"x\\", "level":"error'
    fake_ccv.orders[orders[4]] = "Processing"
    async with Runtime(config) as rt:
        daemon = Daemon(config, rt, Notifier(None))
        await rt.store.orders.track("ccv", "default", [(o, None) for o in orders], time.time())
        await rt.store.orders.track("ccv", "removed", [(orders[0], None)], time.time())
        await rt.coordinators.ccv["default"].check(orders, via="poll")
        await daemon.hub.refresh_metrics()
        body = daemon.metrics.render()[0].decode()
    followed = sorted(x for x in body.splitlines() if x.startswith("reconciler_followed_orders{"))
    assert followed == [
        'reconciler_followed_orders{account="default",source="ccv",status="Processing"} 1.0',
        'reconciler_followed_orders{account="default",source="ccv",status="other"} 4.0',
    ]


STUCK_ORDER = "7e57a11c-0000-4000-8000-0000000000aa"
MOVING_ORDER = "7e57a11c-0000-4000-8000-0000000000bb"


async def test_the_daemon_feeds_the_gauges_from_the_store_and_times_passes(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(
        write_config(
            tmp_path,
            ccv=fake_ccv,
            ccv_extra='poll_interval = "7m"',
            extra='[alerts.stuck_after.ccv]\nAwaitingPayment = "1h"\n',
        )
    )
    fake_ccv.orders = {STUCK_ORDER: "AwaitingPayment", MOVING_ORDER: "AwaitingPayment"}
    async with Runtime(config) as rt:
        daemon = Daemon(config, rt, Notifier(None))
        value = daemon.metrics.registry.get_sample_value
        ccv = {"source": "ccv", "account": "default"}
        await daemon.hub.refresh_metrics()
        # Before the first pass: the account is exported, never answered, nothing stuck.
        assert value("reconciler_last_success_timestamp_seconds", ccv) == 0
        assert value("reconciler_source_ok", ccv) == 1
        assert value("reconciler_poll_interval_seconds", ccv) == 420
        assert value("reconciler_stuck_orders", ccv) == 0

        orders = [STUCK_ORDER, MOVING_ORDER]
        # Checked two hours ago; now one order is still awaiting payment, the other moved on.
        rt.reconciler.clock = lambda: time.time() - 7200
        await rt.store.orders.track("ccv", "default", [(o, None) for o in orders], time.time())
        await rt.coordinators.ccv["default"].check(orders, via="poll")
        rt.reconciler.clock = time.time
        fake_ccv.orders[MOVING_ORDER] = "Processing"
        await rt.coordinators.ccv["default"].check(orders, via="poll")
        await rt.coordinators.ccv["default"].check(orders, via="notification")
        sink = rt.delivery.lanes[0].config.name
        due = await rt.store.outbox.due(sink, time.time() + 7200, 10)
        await rt.store.outbox.failed(sink, [(due.rows[0].seq, "refused", None)])
        await daemon.hub.refresh_metrics()
        assert value("reconciler_stuck_orders", ccv) == 1
        assert value("reconciler_dead_letters", {"sink": sink}) == 1
        assert value("reconciler_sink_disabled", {"sink": sink}) == 0
        await rt.store.outbox.disable_sink(sink, "http 410", time.time())
        await daemon.hub.refresh_metrics()
        assert value("reconciler_sink_disabled", {"sink": sink}) == 1
        assert value("reconciler_source_ok", ccv) == 1
        assert (value("reconciler_last_success_timestamp_seconds", ccv) or 0) > 0
        passes = "reconciler_pass_duration_seconds_count"
        assert value(passes, {**ccv, "via": "poll"}) == 2
        assert value(passes, {**ccv, "via": "notification"}) == 1

        # A failure of the whole account answers no order: each counts as a failed check.
        fake_ccv.always = Reply(401)
        failed = value("reconciler_checks_total", {**ccv, "outcome": "failed"}) or 0
        await rt.coordinators.ccv["default"].check(orders, via="poll")
        assert value("reconciler_checks_total", {**ccv, "outcome": "failed"}) == failed + 2
        assert value("reconciler_check_failures_total", {**ccv, "reason": "source_failed"}) == 2
        fake_ccv.always = Reply(500)
        await rt.coordinators.ccv["default"].full_pass(via="poll")
        await daemon.hub.refresh_metrics()
        assert value("reconciler_source_ok", ccv) == 0
        assert value(passes, {**ccv, "via": "poll"}) == 4  # two checks, the failed one, the pass
        # Once the stuck order changes status it no longer counts.
        fake_ccv.always = None
        fake_ccv.orders[STUCK_ORDER] = "Completed"
        await rt.coordinators.ccv["default"].check([STUCK_ORDER], via="poll")
        await daemon.hub.refresh_metrics()
        assert value("reconciler_stuck_orders", ccv) == 0
        assert value("reconciler_source_ok", ccv) == 1


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        (DEAD_LETTERS_SQL, "deliveries_dead"),
        (STUCK_SQL, "orders_stuck"),
        (FAILING_SQL, "orders_failing"),  # `status`
    ],
)
async def test_scrape_counts_read_only_their_partial_index(
    tmp_path: Path, sql: str, index: str
) -> None:
    # Every scrape runs these; a full scan would read millions of rows after a year.
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        plan = " ".join(
            str(r[-1]) for r in await store.conn.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}")
        )
    finally:
        await store.close()
    assert re.search(rf"USING (COVERING )?INDEX {index}\b", plan), plan


async def test_a_catch_up_counts_the_orders_a_failed_account_left_unanswered(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon's start-up catch-up is a full pass: an account failing in it must show in
    # reconciler_checks_total as the due ticks' checks do, or alerting on failed checks misses it.
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow))
    ccv_orders = [f"7e57a11c-0000-4000-8000-00000000000{n}" for n in range(3)]
    ccnow_orders = ["396-10-1001", "396-10-1002"]
    async with Runtime(config) as rt:
        daemon = Daemon(config, rt, Notifier(None))
        value = daemon.metrics.registry.get_sample_value
        now = time.time()
        await rt.store.orders.track("ccv", "default", [(o, None) for o in ccv_orders], now)
        await rt.store.orders.track("ccnow", "default", [(o, None) for o in ccnow_orders], now)

        fake_ccv.always = Reply(401)
        await rt.coordinators.ccv["default"].full_pass(via="catch-up")
        ccv = {"source": "ccv", "account": "default"}
        assert value("reconciler_checks_total", {**ccv, "outcome": "failed"}) == 3
        assert value("reconciler_check_failures_total", {**ccv, "reason": "source_failed"}) == 3

        # The pending list answers (one order on it); the query of the other fails as a whole.
        fake_ccnow.script = [Reply(200, "396-10-1001 pending\n")]
        fake_ccnow.always = Reply(200, "error_message system down for maintenance\n")
        await rt.coordinators.ccnow["default"].full_pass(via="catch-up")
        ccnow = {"source": "ccnow", "account": "default"}
        assert value("reconciler_checks_total", {**ccnow, "outcome": "ok"}) == 1
        assert value("reconciler_checks_total", {**ccnow, "outcome": "failed"}) == 1
        assert value("reconciler_check_failures_total", {**ccnow, "reason": "source_failed"}) == 1
