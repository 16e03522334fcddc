"""Prometheus metrics of the daemon, in a registry of their own (no process-global state)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Collection, Mapping, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .events import Event
from .model import NOT_FOUND_UNCONFIRMED, Observation, OrderKey, Outcome, status_info

# The status label of an order no answer gave a status yet, and of a word the provider does not
# document: each such word a series of its own would let a provider (or a fake answering a word
# per order) grow the metrics without end, and put any text in a label.
NO_STATUS = "unknown"
OTHER_STATUS = "other"

# What a store failure can be while the daemon runs (store/health.py's kinds but `busy`, a wait;
# `corrupt` stops the daemon): each exported, at 0 unless it is the failure now.
STORE_FAILURES = ("full", "io", "gone", "corrupt")

# From "within the poll" to "long after": a notification should become an event in seconds.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# From a due tick of a few orders to a catch-up of a million.
PASS_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Metrics:
    """Every metric the daemon exports; the daemon feeds it, /metrics renders it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter(
            "reconciler_checks",
            "Order checks by outcome (ok, not_found, failed).",
            ["source", "account", "outcome"],
            registry=self.registry,
        )
        self.check_failures = Counter(
            "reconciler_check_failures",
            "Failed order checks by reason.",
            ["source", "account", "reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "reconciler_events",
            "Events written to the outbox, by type.",
            ["type"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "reconciler_notifications",
            "Notification requests: accepted, or the reason they were refused.",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.api_unauthorized = Counter(
            "reconciler_api_unauthorized",
            "API requests refused for their bearer token: missing, or invalid (not the daemon's).",
            ["reason"],
            registry=self.registry,
        )
        self.notification_latency = Histogram(
            "reconciler_notification_latency_seconds",
            "Time from a notification's arrival to the end of the check it caused.",
            ["source"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.followed = Gauge(
            "reconciler_followed_orders",
            "Followed orders by last seen status (unknown before the first answer, other for "
            "a word the provider does not document).",
            ["source", "account", "status"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "When the source last answered, as epoch seconds; 0 before its first answer.",
            ["source", "account"],
            registry=self.registry,
        )
        self.rest_until = Gauge(
            "reconciler_source_rest_until_timestamp_seconds",
            "When the account's rest at its provider's word (a 429 or 503 whose Retry-After "
            "asks longer than a request's retries wait) ends, as epoch seconds; 0 while it "
            "does not rest: no read of it is sent before then.",
            ["source", "account"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "reconciler_outbox_backlog",
            "Events not yet delivered, per sink.",
            ["sink"],
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "reconciler_dead_letters",
            "Events a sink gave up on (kept; `reconciler replay` sends them again), per sink.",
            ["sink"],
            registry=self.registry,
        )
        self.sink_disabled = Gauge(
            "reconciler_sink_disabled",
            "1 while a sink is disabled (its webhook answered 410 Gone), else 0, per sink.",
            ["sink"],
            registry=self.registry,
        )
        self.pass_duration = Histogram(
            "reconciler_pass_duration_seconds",
            "How long a pass over one account took, by how it was started (via).",
            ["source", "account", "via"],
            buckets=PASS_BUCKETS_S,
            registry=self.registry,
        )
        self.source_ok = Gauge(
            "reconciler_source_ok",
            "1 while the provider account answers, 0 while it is failing.",
            ["source", "account"],
            registry=self.registry,
        )
        self.stuck = Gauge(
            "reconciler_stuck_orders",
            "Orders reported stuck (order.stuck) whose status has not changed since, while "
            "that status has a stuck_after in the running config they have spent (status's "
            "STUCK); one whose latest check failed or answered not found is left out until a "
            "good answer.",
            ["source", "account"],
            registry=self.registry,
        )
        self.store_ok = Gauge(
            "reconciler_store_ok",
            "1 while the database can be written, 0 from a failed write (a full disk, an I/O "
            "error, its file gone) until the next committed one.",
            registry=self.registry,
        )
        self.store_failing = Gauge(
            "reconciler_store_failing",
            "1 for the kind of the database's failure now (full, io, gone, corrupt), else 0.",
            ["kind"],
            registry=self.registry,
        )
        self.poll_interval = Gauge(
            "reconciler_poll_interval_seconds",
            "The account's configured poll_interval.",
            ["source", "account"],
            registry=self.registry,
        )

    def observe_checks(
        self, source: str, account: str, observations: Sequence[Observation]
    ) -> None:
        """Count the outcome of each check, and each failure by its reason; a "not found" is
        left to `observe_not_found`, which knows whether the write confirmed it."""
        outcomes = Tally(obs.outcome.value for obs in observations)
        outcomes.pop(Outcome.NOT_FOUND.value, None)
        for outcome, count in outcomes.items():
            self.checks.labels(source, account, outcome).inc(count)
        reasons = Tally(
            obs.reason or "unknown" for obs in observations if obs.outcome is Outcome.FAILED
        )
        for reason, count in reasons.items():
            self.check_failures.labels(source, account, reason).inc(count)

    def observe_not_found(
        self, observations: Sequence[Observation], unconfirmed: Collection[OrderKey]
    ) -> None:
        """Count the checks answered "not found" once the write has judged them: those of
        `unconfirmed` (orders found before, not confirmed missing yet) as failed checks
        (reason `not_found_unconfirmed`), as `status` and a catch-up count them."""
        failed, not_found = Outcome.FAILED.value, Outcome.NOT_FOUND.value
        checks: Tally[tuple[str, str, str]] = Tally()
        failures: Tally[tuple[str, str]] = Tally()
        for obs in observations:
            if obs.outcome is not Outcome.NOT_FOUND:
                continue
            source, account = obs.key.source, obs.key.account
            if obs.key in unconfirmed:
                checks[(source, account, failed)] += 1
                failures[(source, account)] += 1
            else:
                checks[(source, account, not_found)] += 1
        for labels, count in checks.items():
            self.checks.labels(*labels).inc(count)
        for where, count in failures.items():
            self.check_failures.labels(*where, NOT_FOUND_UNCONFIRMED).inc(count)

    def observe_unanswered(self, source: str, account: str, count: int) -> None:
        """Count orders a failure of the whole account left without an answer as failed checks
        (reason `source_failed`): a CCNow batch fails as one, with no answer per order."""
        self.checks.labels(source, account, Outcome.FAILED.value).inc(count)
        self.check_failures.labels(source, account, "source_failed").inc(count)

    def observe_events(self, events: Sequence[Event]) -> None:
        """Count events by type."""
        for kind, count in Tally(event.type.value for event in events).items():
            self.events.labels(kind).inc(count)

    def expect_notifications(self, sources: Sequence[str]) -> None:
        """Export the notification series of the sources the receiver takes at 0 from the start:
        a dashboard or a rate() shows 0, not "no data", until the first notification."""
        for source in sources:
            self.notifications.labels(source, "accepted")
            self.notification_latency.labels(source)

    def observe_notification(self, source: str, outcome: str) -> None:
        """Count one notification request: `accepted`, or why it was refused (`bad_signature`,
        `bad_token`, `too_large`, `method`, ...)."""
        self.notifications.labels(source, outcome).inc()

    def observe_unauthorized(self, reason: str) -> None:
        self.api_unauthorized.labels(reason=reason).inc()

    def observe_notification_latency(self, source: str, seconds: float) -> None:
        """Record how long a notification took to become a finished check."""
        self.notification_latency.labels(source).observe(seconds)

    def set_followed(
        self,
        counts: Mapping[tuple[str, str, str | None], int],
        *,
        accounts: Collection[tuple[str, str]],
    ) -> None:
        """Replace the followed-order counts, keyed by (source, account, status), of the
        configured `accounts` (source, account) only; undocumented words count as `other`."""
        folded: Tally[tuple[str, str, str]] = Tally()
        for (source, account, status), count in counts.items():
            if (source, account) in accounts:
                folded[(source, account, _status_label(source, status))] += count
        # clear() first so that a status nobody is in any more disappears instead of lingering.
        self.followed.clear()
        for labels, count in folded.items():
            self.followed.labels(*labels).set(count)

    def set_last_success(self, source: str, account: str, ts: float | None) -> None:
        """Set when a source last answered; None (never) exports 0 so that age alerts fire."""
        self.last_success.labels(source, account).set(ts or 0.0)

    def set_rest_until(self, source: str, account: str, until: float | None) -> None:
        """Set when an account's rest ends; None (no rest ahead) exports 0."""
        self.rest_until.labels(source, account).set(until or 0.0)

    def set_outbox_backlog(self, counts: Mapping[str, int]) -> None:
        """Replace the undelivered-event counts per sink."""
        self.outbox_backlog.clear()
        for sink, count in counts.items():
            self.outbox_backlog.labels(sink).set(count)

    def set_dead_letters(self, counts: Mapping[str, int]) -> None:
        """Replace the dead-lettered event counts per sink."""
        self.dead_letters.clear()
        for sink, count in counts.items():
            self.dead_letters.labels(sink).set(count)

    def set_sinks_disabled(self, disabled: Mapping[str, bool]) -> None:
        """Replace which sinks are disabled (a 410 until `replay --sink` enables them)."""
        self.sink_disabled.clear()
        for sink, off in disabled.items():
            self.sink_disabled.labels(sink).set(1 if off else 0)

    def observe_pass(self, source: str, account: str, via: str, seconds: float) -> None:
        """Record how long one pass over an account took."""
        self.pass_duration.labels(source, account, via).observe(seconds)

    def set_source(
        self, source: str, account: str, *, failing: bool, poll_interval_s: float
    ) -> None:
        """Set an account's health and its poll interval (for "no success for N intervals")."""
        self.source_ok.labels(source, account).set(0 if failing else 1)
        self.poll_interval.labels(source, account).set(poll_interval_s)

    def set_store(self, failing: str | None) -> None:
        """Set the store's health: None while it can be written, else its failure's kind."""
        self.store_ok.set(0 if failing else 1)
        for kind in STORE_FAILURES:
            self.store_failing.labels(kind).set(1 if kind == failing else 0)

    def set_stuck(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the stuck-order counts, keyed by (source, account)."""
        self.stuck.clear()
        for (source, account), count in counts.items():
            self.stuck.labels(source, account).set(count)

    def render(self) -> tuple[bytes, str]:
        """Return the Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _status_label(source: str, status: str | None) -> str:
    if status is None:
        return NO_STATUS
    return status if status_info(source, status).known else OTHER_STATUS
