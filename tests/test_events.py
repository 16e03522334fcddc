"""An event's bytes: the one encoding every sink receives is the CloudEvent's JSON."""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler.events import (
    _NAMESPACE,
    Event,
    action_event,
    order_event,
    submit_uncertain_event,
    transition_id,
)
from reconciler.model import EventType, OrderKey, Source

# Text with what JSON must escape or keep: quotes, backslashes, control and non-ASCII characters
# (lone surrogates left out: no JSON text, and no event, can carry them as UTF-8).
TEXT = st.text(st.characters(exclude_categories=["Cs"]))
VALUES = st.none() | st.booleans() | st.integers() | TEXT
SEVERITIES = st.sampled_from(["info", "warning", "error"])
TIMES = st.floats(min_value=0, max_value=4_102_444_800)  # up to the year 2100


def dumps(event: Event) -> bytes:
    """The reference: json.dumps of the CloudEvent object, compact, UTF-8 as is."""
    return json.dumps(event.cloudevent(), ensure_ascii=False, separators=(",", ":")).encode()


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


@given(
    order_id=TEXT,
    account=TEXT,
    reference=st.none() | TEXT,
    previous=st.none() | TEXT,
    status=st.none() | TEXT,
    time=TIMES,
    flags=st.tuples(st.booleans(), st.booleans()),
)
def test_an_order_events_bytes_carry_the_contracts_fields_in_order(
    order_id: str,
    account: str,
    reference: str | None,
    previous: str | None,
    status: str | None,
    time: float,
    flags: tuple[bool, bool],
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
    assert list(decoded["data"])[:9] == [
        "source",
        "account",
        "order_id",
        "external_reference",
        "previous_status",
        "status",
        "end_state",
        "severity",
        "via",
    ]


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
