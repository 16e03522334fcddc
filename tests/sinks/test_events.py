"""An event's bytes: the one encoding every sink receives is the CloudEvent's JSON."""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler.config import AlertsConfig
from reconciler.diff import diff
from reconciler.events import (
    _NAMESPACE,
    Event,
    action_event,
    order_event,
    submit_uncertain_event,
    transition_id,
)
from reconciler.model import EventType, Observation, OrderKey, OrderState, Outcome, Source
from reconciler.schedule import stuck_event

# Text with what JSON must escape or keep: quotes, backslashes, control and non-ASCII characters
# (lone surrogates left out: no JSON text, and no event, can carry them as UTF-8).
TEXT = st.text(st.characters(exclude_categories=["Cs"]))
VALUES = st.none() | st.booleans() | st.integers() | TEXT
SEVERITIES = st.sampled_from(["info", "warning", "error"])
TIMES = st.floats(min_value=0, max_value=4_102_444_800)  # up to the year 2100


def dumps(event: Event) -> bytes:
    """The reference: json.dumps of the CloudEvent object, compact, UTF-8 as is but for the
    three line ends str.splitlines() knows and JSON does not escape."""
    text = json.dumps(event.cloudevent(), ensure_ascii=False, separators=(",", ":"))
    for end in ("\u2028", "\u2029", "\x85"):
        text = text.replace(end, f"\\u{ord(end):04x}")
    return text.encode()


@given(
    id=TEXT,
    type=st.sampled_from(EventType),
    time=TIMES,
    source=st.sampled_from(["ccv", "ccnow"]),
    account=TEXT,
    order_id=st.none() | TEXT,
    severity=SEVERITIES,
    data=st.dictionaries(TEXT, VALUES),
)
def test_an_events_bytes_are_its_cloudevent_as_json_dumps_writes_it(**fields: Any) -> None:
    event = Event(**fields)
    assert event.body() == dumps(event)
    assert json.loads(event.body()) == event.cloudevent()


# An order event's data fields, in the contract's order (extra ones follow).
_CONTRACT = (
    "source",
    "account",
    "order_id",
    "external_reference",
    "previous_status",
    "status",
    "end_state",
    "severity",
    "via",
    "unknown_status",
)
_KEYWORDS = {*_CONTRACT, "type", "key", "id", "time", "external_reference"}


@given(
    order_id=TEXT,
    account=TEXT,
    reference=st.none() | TEXT,
    previous=st.none() | TEXT,
    status=st.none() | TEXT,
    time=TIMES,
    flags=st.tuples(st.booleans(), st.booleans()),
    # Not a contract field, nor one of order_event's own keywords (`time`, `id`, ...).
    extra=st.dictionaries(TEXT.filter(lambda k: k not in _KEYWORDS), VALUES | TIMES),
)
def test_an_order_events_bytes_carry_the_contracts_fields_in_order(
    order_id: str,
    account: str,
    reference: str | None,
    previous: str | None,
    status: str | None,
    time: float,
    flags: tuple[bool, bool],
    extra: dict[str, Any],
) -> None:
    event = order_event(
        EventType.STATUS_CHANGED,
        OrderKey("ccnow", account, order_id),
        id="id-1",
        time=time,
        severity="warning",
        external_reference=reference,
        previous_status=previous,
        status=status,
        end_state=flags[0],
        via="poll",
        unknown_status=flags[1],
        **extra,
    )
    assert event.body() == dumps(event)
    decoded = json.loads(event.body())
    assert list(decoded) == [
        "specversion",
        "id",
        "type",
        "source",
        "subject",
        "time",
        "datacontenttype",
        "data",
    ]
    assert (decoded["source"], decoded["subject"]) == (f"reconciler/ccnow/{account}", order_id)
    assert list(decoded["data"]) == [*_CONTRACT, *extra]


def test_events_without_an_order_have_no_subject_and_the_rest_encode_the_same() -> None:
    uncertain = submit_uncertain_event(
        "store-1", 7, account="default", reference='shop-1 "q" ✓', time=1.5, reason="timeout"
    )
    action = action_event(
        "store-1",
        3,
        "refused",
        account="default",
        order_id="396-10-1142",
        action="ship",
        answer="x_status_1=error\nnot pending",
        time=2.25,
        before=None,
        after=None,
    )
    assert "subject" not in json.loads(uncertain.body())
    for event in (uncertain, action):
        assert event.body() == dumps(event)
    assert json.loads(action.body())["time"] == "1970-01-01T00:00:02.250Z"


@given(
    store_id=TEXT,
    key=st.tuples(st.sampled_from(["ccv", "ccnow"]), TEXT, TEXT),
    tracked_at=st.none() | TIMES | st.integers(),
    version=st.integers(min_value=0),
    statuses=st.tuples(st.none() | TEXT, st.none() | TEXT),
    kind=st.sampled_from(["", "stuck", "not_found"]),
)
def test_a_transitions_id_is_uuid5_of_its_parts_as_ids_were_always_made(
    store_id: str,
    key: tuple[Source, str, str],
    tracked_at: float | None,
    version: int,
    statuses: tuple[str | None, str | None],
    kind: str,
) -> None:
    # Stored events keep their ids, and a transition found again after a crash must get the
    # one it had: the recipe never changes.
    previous, status = statuses
    json_statuses = ",".join(json.dumps(s, ensure_ascii=False) for s in statuses)
    parts = [store_id, "transition", *key, str(tracked_at), str(version), json_statuses]
    name = "/".join([*parts, kind] if kind else parts)
    got = transition_id(store_id, OrderKey(*key), tracked_at, version, previous, status, kind)
    assert got == str(uuid.uuid5(_NAMESPACE, name))


# What bd964b3 wrote for a few transitions of every kind an order has: the ids and the bytes
# of events stored by earlier versions, which a transition found again must match.
_WRITTEN_BEFORE = [
    (
        "0349dd74-26fd-5b8d-9cf3-de99219831b8",
        '{"specversion":"1.0","id":"0349dd74-26fd-5b8d-9cf3-de99219831b8",'
        '"type":"order.discovered","source":"reconciler/ccv/default",'
        '"subject":"8f1b6a9e-0000-4000-8000-000000000001","time":"2027-01-15T08:00:00.250Z",'
        '"datacontenttype":"application/json","data":{"source":"ccv","account":"default",'
        '"order_id":"8f1b6a9e-0000-4000-8000-000000000001","external_reference":"ref-1",'
        '"previous_status":null,"status":"AwaitingPayment","end_state":false,'
        '"severity":"info","via":"catch-up","unknown_status":false}}',
    ),
    (
        "4aa3684e-9584-5c90-9a34-2f8e9e753406",
        '{"specversion":"1.0","id":"4aa3684e-9584-5c90-9a34-2f8e9e753406",'
        '"type":"order.status_changed","source":"reconciler/ccnow/shop 2",'
        '"subject":"396-10-1142","time":"2027-01-15T08:00:00.250Z",'
        '"datacontenttype":"application/json","data":{"source":"ccnow","account":"shop 2",'
        '"order_id":"396-10-1142","external_reference":"ref \\"é\\"",'
        '"previous_status":"pending","status":"mark_shipped","end_state":false,'
        '"severity":"info","via":"catch-up","unknown_status":false}}',
    ),
    (
        "b5deac95-956b-5169-ae57-d198819c91b9",
        '{"specversion":"1.0","id":"b5deac95-956b-5169-ae57-d198819c91b9",'
        '"type":"order.status_changed","source":"reconciler/ccv/default",'
        '"subject":"8f1b6a9e-0000-4000-8000-000000000001","time":"2027-01-15T08:00:00.250Z",'
        '"datacontenttype":"application/json","data":{"source":"ccv","account":"default",'
        '"order_id":"8f1b6a9e-0000-4000-8000-000000000001","external_reference":"ref-1",'
        '"previous_status":"AwaitingPayment","status":"Bogus","end_state":false,'
        '"severity":"warning","via":"catch-up","unknown_status":true}}',
    ),
    (
        "f504c10d-6b6d-538d-a063-3db321d91cde",
        '{"specversion":"1.0","id":"f504c10d-6b6d-538d-a063-3db321d91cde",'
        '"type":"order.not_found","source":"reconciler/ccnow/shop 2",'
        '"subject":"396-10-1142","time":"2027-01-15T08:05:01.250Z",'
        '"datacontenttype":"application/json","data":{"source":"ccnow","account":"shop 2",'
        '"order_id":"396-10-1142","external_reference":"ref \\"é\\"",'
        '"previous_status":"mark_shipped","status":null,"end_state":false,'
        '"severity":"warning","via":"poll","unknown_status":false}}',
    ),
    (
        "bee4ac88-6f68-5466-9e3c-80e3ea792e57",
        '{"specversion":"1.0","id":"bee4ac88-6f68-5466-9e3c-80e3ea792e57",'
        '"type":"order.stuck","source":"reconciler/ccv/default",'
        '"subject":"8f1b6a9e-0000-4000-8000-000000000001","time":"2027-01-15T08:01:30.250Z",'
        '"datacontenttype":"application/json","data":{"source":"ccv","account":"default",'
        '"order_id":"8f1b6a9e-0000-4000-8000-000000000001","external_reference":"ref-1",'
        '"previous_status":"Bogus","status":"Bogus","end_state":false,'
        '"severity":"warning","via":"poll","unknown_status":true,'
        # Since 2026-12: "stuck_for_s" is a float as "stuck_after_s" is (it was the int 90).
        '"stuck_for_s":90.0,"stuck_after_s":60.0}}',
    ),
]


def test_order_events_keep_the_ids_and_bytes_earlier_versions_wrote() -> None:
    now = 1_800_000_000.25
    ccv = OrderKey("ccv", "default", "8f1b6a9e-0000-4000-8000-000000000001")
    ccnow = OrderKey("ccnow", "shop 2", "396-10-1142")
    snapshot = {
        ccv: OrderState(ccv, tracked_at=1_799_999_000.123456),
        ccnow: OrderState(
            ccnow,
            status="pending",
            external_reference='ref "é"',
            first_seen=1.5,
            last_changed=1.5,
            version=3,
            tracked_at=1_700_000_000.0,
        ),
    }
    seen = diff(
        snapshot,
        [
            Observation(ccv, Outcome.OK, status="AwaitingPayment", external_reference="ref-1"),
            Observation(ccnow, Outcome.OK, status="mark_shipped"),
            Observation(ccv, Outcome.OK, status="Bogus"),
        ],
        now=now,
        via="catch-up",
        store_id="store-1",
    )
    missing = diff(
        {ccnow: seen.states[ccnow]._replace(missing_since=now)},
        [Observation(ccnow, Outcome.NOT_FOUND)],
        now=now + 301,
        via="poll",
        store_id="store-1",
    )
    alerts = AlertsConfig({("ccv", "Bogus"): 60.0})
    stuck = stuck_event(seen.states[ccv], alerts=alerts, now=now + 90, store_id="store-1")
    assert stuck is not None
    events = [*seen.events, *missing.events, stuck[1]]
    assert [(e.id, e.body()) for e in events] == [
        (id, body.encode()) for id, body in _WRITTEN_BEFORE
    ]


def test_a_lost_submit_s_event_has_the_data_keys_and_via_of_the_contract() -> None:
    # DESIGN.md: every event's data has these keys, and `via` is one of four words.
    event = submit_uncertain_event("s", 7, account="default", reference="R-1", time=1.0, reason="t")
    data = json.loads(event.body())["data"]
    keys = {"source", "account", "order_id", "external_reference", "previous_status", "status"}
    assert keys | {"end_state", "severity", "via"} <= set(data)
    assert data["via"] in ("poll", "catch-up", "notification", "action")
    assert (data["order_id"], data["status"], data["end_state"]) == (None, None, False)
