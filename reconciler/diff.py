"""The reconciliation rules, pure: (snapshot, observations) -> rows and events.

Every transition (a status change, or first sight) is an event; the stored events are the
orders' history.

No I/O and no clock: callers pass `now`. Every rule of what counts as a change lives here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .events import Event, event_id, order_event, transition_id
from .model import (
    EventType,
    Observation,
    OrderKey,
    OrderState,
    Outcome,
    Severity,
    SourceState,
    Via,
    status_info,
)


@dataclass
class DiffResult:
    """What a batch of observations changes."""

    states: dict[OrderKey, OrderState] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    # orders whose status changed (or were discovered) in this batch: checked again soon
    changed: set[OrderKey] = field(default_factory=set)


def diff(
    snapshot: Mapping[OrderKey, OrderState],
    observations: Iterable[Observation],
    *,
    now: float,
    via: Via,
    store_id: str,
) -> DiffResult:
    """Apply observations in order to the snapshot; return the touched rows and their events.

    Observations of orders that are not in the snapshot are first sightings (the CCNow pending
    list reveals orders nobody tracked). A failed check changes nothing but the failure streak.
    """
    result = DiffResult()
    for obs in observations:
        prev = result.states.get(obs.key) or snapshot.get(obs.key)
        if obs.outcome is Outcome.OK:
            _observed(result, prev, obs, now=now, via=via, store_id=store_id)
        elif obs.outcome is Outcome.NOT_FOUND:
            if prev is not None:
                _not_found(result, prev, now=now, via=via, store_id=store_id)
        elif prev is not None:
            result.states[obs.key] = prev._replace(failure_streak=prev.failure_streak + 1)
    return result


def _observed(
    result: DiffResult,
    prev: OrderState | None,
    obs: Observation,
    *,
    now: float,
    via: Via,
    store_id: str,
) -> None:
    key, status = obs.key, obs.status
    if status is None:  # an OK observation always carries a status; refuse to invent one
        return
    info = status_info(key.source, status)
    base = prev or OrderState(key=key, tracked_at=now)
    reference = obs.external_reference or base.external_reference
    previous = base.status
    changed = previous != status
    # One constructor call per order: this runs for every check of every order.
    state = OrderState(
        key=key,
        status=status,
        external_reference=reference,
        first_seen=now if base.first_seen is None else base.first_seen,
        last_changed=now if changed else base.last_changed,
        last_checked=now,
        end_state=info.end_state,
        not_found=False,
        failure_streak=0,
        version=base.version + 1 if changed else base.version,
        next_check_at=base.next_check_at,
        interval_s=base.interval_s,
        stuck_version=None if changed else base.stuck_version,
        tracked_at=base.tracked_at,
    )
    result.states[key] = state
    if not changed:
        return
    ev = order_event(
        EventType.DISCOVERED if previous is None else EventType.STATUS_CHANGED,
        key,
        id=transition_id(store_id, key, base.tracked_at, state.version, previous, status),
        time=now,
        severity=info.severity,
        external_reference=reference,
        previous_status=previous,
        status=status,
        end_state=info.end_state,
        via=via,
        unknown_status=not info.known,
    )
    result.events.append(ev)
    result.changed.add(key)


def _not_found(
    result: DiffResult, prev: OrderState, *, now: float, via: Via, store_id: str
) -> None:
    key = prev.key
    if prev.not_found:  # reported once; the order stays followed and is checked rarely
        result.states[key] = prev._replace(last_checked=now, failure_streak=0)
        return
    version = prev.version + 1
    ev = order_event(
        EventType.NOT_FOUND,
        key,
        id=transition_id(store_id, key, prev.tracked_at, version, prev.status, None, "not_found"),
        time=now,
        severity="warning",
        external_reference=prev.external_reference,
        previous_status=prev.status,
        status=None,
        end_state=False,
        via=via,
    )
    result.states[key] = prev._replace(
        not_found=True, last_checked=now, failure_streak=0, version=version
    )
    result.events.append(ev)


def source_outcome(
    state: SourceState,
    *,
    ok: bool,
    now: float,
    via: Via,
    store_id: str,
    reason: str | None = None,
) -> tuple[SourceState, Event | None]:
    """Record one pass of a source; return its new health and an event when it flips.

    `source.failed` is raised once when a source starts failing and `source.recovered` once when
    it answers again: state changes, never attempts.
    """
    severity: Severity
    if ok:
        new = replace(state, failing=False, failure_streak=0, last_success=now, last_error=None)
        if not state.failing:
            return new, None
        event_type, severity, episode = EventType.SOURCE_RECOVERED, "info", state.episode
        data_reason = state.last_error
    else:
        new = replace(
            state,
            failing=True,
            failure_streak=state.failure_streak + 1,
            last_failure=now,
            last_error=reason,
            episode=state.episode + (0 if state.failing else 1),
        )
        if state.failing:
            return new, None
        event_type, severity, episode = EventType.SOURCE_FAILED, "error", new.episode
        data_reason = reason
    ev = Event(
        id=event_id(store_id, "source", state.source, state.account, episode, event_type.value),
        type=event_type,
        time=now,
        source=state.source,
        account=state.account,
        order_id=None,
        severity=severity,
        data={
            "source": state.source,
            "account": state.account,
            "reason": data_reason,
            "severity": severity,
            "via": via,
        },
    )
    return new, ev
