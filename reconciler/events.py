"""Events as CloudEvents 1.0 (structured mode), with ids that are stable across redeliveries."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from .json_text import compact_json, iso_time, line_safe, optional_string_json, string_json
from .model import EventType, OrderKey, OrderState, Severity, Source, Via, status_info

# Ids are uuid5 over the store's own id and what happened, so a transition that is found again
# after a crash gets the id it would have had the first time.
_NAMESPACE = uuid.UUID("6f1c2a4e-8f0b-4d57-9a8e-2c1d3b5e7a90")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def event_id(store_id: str, *parts: object) -> str:
    """Return the deterministic id of an event, from the store id and what makes it unique."""
    return _uuid5("/".join([store_id, *map(str, parts)]))


# uuid5's variant digit: the RFC 4122 bits "10" over the two low bits of the hash's digit
_VARIANT: Final[Mapping[str, str]] = {f"{i:x}": f"{8 | i & 3:x}" for i in range(16)}


def _uuid5(name: str) -> str:
    """Return str(uuid5(_NAMESPACE, name)), written into the hash's hex digits instead of
    built as a UUID: it runs once per event on the hot path of a catch-up."""
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def transition_id(
    store_id: str,
    key: OrderKey,
    tracked_at: float | None,
    version: int,
    previous_status: str | None,
    status: str | None,
    kind: str = "",
) -> str:
    """Return the id of an order event from what happened: the order, its place in the order's
    history (since it was tracked: an order tracked again starts a new history) and the
    statuses before and after. The same transition found again keeps its id; a different one
    never gets it, not even after a restore from backup or a lost WAL, where a place comes
    again: `store_id` then carries the store's new epoch (store/history.py). `kind` tells
    apart events of one place ("stuck").

    Events stored by earlier versions (whose ids left the statuses out) keep the ids they
    were stored with: a redelivery sends the stored body.
    """
    # JSON: None is not "None"
    statuses = f"{optional_string_json(previous_status)},{optional_string_json(status)}"
    parts = (key.source, key.account, key.order_id, tracked_at, version, statuses)
    return event_id(store_id, "transition", *parts, *((kind,) if kind else ()))


class Event(NamedTuple):
    """One event as stored in the outbox: what happened, and the CloudEvent it is sent as.

    A named tuple, as the other records made once per check (model.py): a frozen dataclass
    costs a microsecond more to build, and a catch-up builds one per order."""

    id: str
    type: EventType
    time: float
    source: Source
    account: str
    order_id: str | None
    severity: Severity
    data: dict[str, Any]

    def cloudevent(self) -> dict[str, Any]:
        """Return the CloudEvents 1.0 structured-mode object."""
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "type": self.type.value,
            "source": f"reconciler/{self.source}/{self.account}",
        }
        if self.order_id is not None:
            event["subject"] = self.order_id
        event["time"] = iso_time(self.time)
        event["datacontenttype"] = "application/json"
        event["data"] = self.data
        return event

    def body(self) -> bytes:
        """Return the serialized CloudEvent: the bytes the store keeps and every sink receives;
        the one place an event is encoded.

        This is the text of compact json.dumps(self.cloudevent()) with its line ends escaped
        (json_text.line_safe), the envelope written out around the data's JSON rather than
        built as a dict and encoded: a few microseconds less per event stored
        (bench/README.md; tests/sinks/test_events.py holds the two equal).
        """
        subject = "" if self.order_id is None else f',"subject":{string_json(self.order_id)}'
        return line_safe(
            f'{{"specversion":"1.0","id":{string_json(self.id)},'
            f'"type":{string_json(self.type.value)},'
            f'"source":{string_json(f"reconciler/{self.source}/{self.account}")}{subject},'
            f'"time":"{iso_time(self.time)}","datacontenttype":"application/json",'
            f'"data":{compact_json(self.data)}}}'
        ).encode()


def order_event(
    type: EventType,
    key: OrderKey,
    *,
    id: str,
    time: float,
    severity: Severity,
    external_reference: str | None,
    previous_status: str | None,
    status: str | None,
    end_state: bool,
    via: str,
    unknown_status: bool = False,
    **extra: Any,
) -> Event:
    """Return an order event; its `data` has the fields of the contract, in its order."""
    data: dict[str, Any] = {
        "source": key.source,
        "account": key.account,
        "order_id": key.order_id,
        "external_reference": external_reference,
        "previous_status": previous_status,
        "status": status,
        "end_state": end_state,
        "severity": severity,
        "via": via,
        "unknown_status": unknown_status,
        **extra,
    }
    return Event(id, type, time, key.source, key.account, key.order_id, severity, data)


def submit_uncertain_event(
    store_id: str,
    submission_id: int,
    *,
    account: str,
    reference: str,
    time: float,
    reason: str,
    location: str | None = None,
    order_id: str | None = None,
) -> Event:
    """Return the `order.submit_uncertain` event of a CCV submission whose answer was lost, or
    could not be followed; `order_id`: the order an answer that is no success named (a 409's,
    a 5xx's), where one did (then also its subject).

    Its id names the submission by its reference and the time too: a store restored from a
    backup numbers its submissions again, and a different submission must not get the id.
    """
    data = {
        "source": "ccv",
        "account": account,
        "order_id": order_id,
        "external_reference": reference,
        # The keys every order event carries (DESIGN.md); the order's status is what is not
        # known (and the order, unless an answer named it). `via` is DESIGN.md's word for what
        # a write through reconciler found.
        "previous_status": None,
        "status": None,
        "end_state": False,
        "severity": "warning",
        "via": "action",
        "unknown_status": False,
        "submission_id": submission_id,
        "reason": reason,
        # CCV's `Location` (a 303's, a 201's), masked: where a person may find the order.
        "location": location,
    }
    return Event(
        event_id(store_id, "ccv-submit", submission_id, account, reference, time, "uncertain"),
        EventType.SUBMIT_UNCERTAIN,
        time,
        "ccv",
        account,
        order_id,
        "warning",
        data,
    )


def _status(state: OrderState | None) -> str | None:
    """An order's status as its events last said it: none for an order not followed, nor for
    one reported not found (`order.not_found` said status null)."""
    return None if state is None or state.not_found else state.status


def _order_fields(before: OrderState | None, after: OrderState | None) -> dict[str, Any]:
    """The fields every order event carries (DESIGN.md, "Events"), for an event that is not a
    transition of the snapshot's own (a CCNow action's): its order's row before and after."""
    status = _status(after)
    return {
        "external_reference": (after or before or _NO_ORDER).external_reference,
        "previous_status": _status(before),
        "status": status,
        # diff.py's rule: the status word's meaning (an unknown word is never an end state).
        "end_state": status is not None and status_info("ccnow", status).end_state,
    }


_NO_ORDER = OrderState(OrderKey("ccnow", "", ""))


def _unknown(after: OrderState | None) -> bool:
    """Whether the order's status is a word outside the documented list, as order events say."""
    status = _status(after)
    return status is not None and not status_info("ccnow", status).known


_ACTION_EVENTS: Final[Mapping[str, tuple[EventType, Severity]]] = {
    "succeeded": (EventType.ACTION_SUCCEEDED, "info"),
    "refused": (EventType.ACTION_REFUSED, "warning"),
    "uncertain": (EventType.ACTION_UNCERTAIN, "error"),
    "unconfirmed": (EventType.ACTION_UNCONFIRMED, "warning"),
}


def action_event(
    store_id: str,
    command_id: int,
    outcome: str,
    *,
    account: str,
    order_id: str,
    action: str,
    answer: str | None,
    time: float,
    before: OrderState | None,
    after: OrderState | None,
    via: Via = "action",
    command: Mapping[str, object] | None = None,
) -> Event:
    """Return the event that closes a CCNow order action: `outcome` is succeeded, refused or
    uncertain; `answer` is CCNow's own words (or why there are none); `before` and `after`:
    its order's snapshot row before and after the command closed (None: not followed). Or,
    `outcome` unconfirmed, that a read (`via`) moved its order back from where it had taken it:
    `before` and `after` that read's. `command`: the command's own fields that follow `answer`
    (an uncertain one's)."""
    type, severity = _ACTION_EVENTS[outcome]
    data = {
        "source": "ccnow",
        "account": account,
        "order_id": order_id,
        **_order_fields(before, after),
        "severity": severity,
        "via": via,
        "unknown_status": _unknown(after),
        "action": action,
        "command_id": command_id,
        "answer": answer,
        **(command or {}),
    }
    return Event(
        # The command's number alone would come again after a restore from backup: what
        # happened (order, action, when) makes the id name this outcome only.
        event_id(store_id, "ccnow-action", command_id, account, order_id, action, time, outcome),
        type,
        time,
        "ccnow",
        account,
        order_id,
        severity,
        data,
    )


def submit_resolved_event(
    store_id: str,
    submission_id: int,
    *,
    account: str,
    reference: str,
    uncertain_at: float | None,
    reason: str | None,
    order_id: str | None,
    how: str,
    time: float,
    location: str | None = None,
    contradicted: bool = False,
) -> Event:
    """Return the `order.submit_resolved` event of an uncertain CCV submission that CCV turned
    out to hold: `how` is `notification` (CCV named its reference) or `track` (a person tracked
    its order with the reference) or `made` (a person said CCV made an order of it that
    reconciler does not follow); or that a person said CCV never got, `how` `not_sent`. The
    data is the `order.submit_uncertain` event's, with the order id when known, so that a
    consumer matches the two by reference. `contradicted`: a notification settled one that had
    failed (CCV refused it, it was not sent, a person said CCV never got it), so no
    `order.submit_uncertain` came before it: a warning, the only sign CCV holds an order of it."""
    severity: Severity = "warning" if contradicted else "info"
    data: dict[str, object] = {
        "source": "ccv",
        "account": account,
        "order_id": order_id,
        "external_reference": reference,
        "previous_status": None,
        "status": None,
        "end_state": False,
        "severity": severity,
        "via": "action",
        "unknown_status": False,
        "submission_id": submission_id,
        "reason": reason,
        "location": location,
        "how": how,
    }
    if contradicted:
        data["contradicted"] = True
    return Event(
        # `uncertain_at` is in the uncertain event's id too: the settlement of that case, and
        # of no other submission numbered alike after a restore.
        event_id(
            store_id,
            "ccv-submit",
            submission_id,
            account,
            reference,
            uncertain_at,
            "not_sent" if how == "not_sent" else "resolved",
        ),
        EventType.SUBMIT_RESOLVED,
        time,
        "ccv",
        account,
        order_id,
        severity,
        data,
    )


def action_resolved_event(
    store_id: str,
    command_id: int,
    *,
    account: str,
    order_id: str,
    action: str,
    resolved: str,
    answer: str,
    uncertain_at: float | None,
    time: float,
    order: OrderState | None,
) -> Event:
    """Return the `order.action_resolved` event of an uncertain CCNow command a person settled:
    `resolved` is `sent` (CCNow has it) or `not_sent`; `order`: its order's snapshot row (None:
    not followed), which a person's word does not change."""
    data = {
        "source": "ccnow",
        "account": account,
        "order_id": order_id,
        **_order_fields(order, order),
        "severity": "info",
        "via": "action",
        "unknown_status": _unknown(order),
        "action": action,
        "command_id": command_id,
        "answer": answer,
        "resolved": resolved,
    }
    return Event(
        # A command is settled once: what made it uncertain (when) names the case, as the
        # uncertain event's id does; the word keeps `sent` and `not_sent` apart.
        event_id(
            store_id,
            "ccnow-action",
            command_id,
            account,
            order_id,
            action,
            uncertain_at,
            f"resolved-{resolved}",
        ),
        EventType.ACTION_RESOLVED,
        time,
        "ccnow",
        account,
        order_id,
        "info",
        data,
    )
