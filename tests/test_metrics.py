"""Prometheus metrics: names, labels, and gauges that forget what vanished."""

from __future__ import annotations

from reconciler.events import Event
from reconciler.metrics import Metrics
from reconciler.model import EventType, Observation, OrderKey, Outcome


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
    metrics.set_followed({("ccv", "default", "Processing"): 3, ("ccnow", "shop", None): 2})
    metrics.set_followed({("ccv", "default", "Completed"): 3})
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
    metrics.set_followed({("ccnow", "shop", None): 2})
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
