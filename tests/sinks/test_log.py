"""The log sink: each event as one JSON log line, written through the log handler it is given."""

from __future__ import annotations

import io
import json
import logging
from typing import TextIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.events import Event, order_event
from reconciler.logs import JsonFormatter, render
from reconciler.model import EventType, OrderKey, Severity
from reconciler.sinks.base import Delivered, OutboxEvent
from reconciler.sinks.log import LogSink, event_fields, event_lines

# The keys a careless cut of the text would take for the envelope's own, inside strings.
TRICKY = 'A-1,"data":{"time":"1999 Straße ✓ 😀 \\ end'
# Keys of the log line itself, as a whole JSON string in the data (the cut must not take them).
OWN = ["time", "level", "logger", "message", "event_id", "event_type", "event_time"]


def handler_on(stream: TextIO, *, journal: bool) -> logging.StreamHandler[TextIO]:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(journal=journal))
    return handler


def stored(seq: int, event: Event) -> OutboxEvent:
    return OutboxEvent(seq, event.id, event.type.value, event.order_id, event.body())


def stuck(order_id: str) -> Event:
    return order_event(
        EventType.STUCK,
        OrderKey("ccv", "default", order_id),
        id="3f2b-id",
        time=1795632726.2160404,
        severity="warning",
        external_reference=TRICKY,
        previous_status="New",
        status="New",
        end_state=False,
        via="poll",
    )


async def test_each_event_is_one_line_of_its_fields_through_the_given_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = io.StringIO()
    sink = LogSink(handler=handler_on(stream, journal=True))
    event = stuck(TRICKY)
    assert await sink.deliver([stored(7, event)]) == [Delivered()]

    (line,) = stream.getvalue().splitlines()
    assert line.startswith("<4>")  # journald's priority for a warning
    fields = json.loads(line.removeprefix("<4>"))
    assert list(fields)[:6] == ["time", "level", "logger", "message", "event_id", "event_type"]
    assert fields == {
        "time": fields["time"],  # when the line was written
        "level": "warning",
        "logger": "reconciler.events",
        "message": "order.stuck",
        "event_id": "3f2b-id",
        "event_type": "order.stuck",
        **event.data,
        "event_time": "2026-11-25T18:52:06.216Z",
    }
    assert capsys.readouterr().err == ""  # nowhere else


async def test_the_lines_follow_a_stream_swapped_on_the_handler() -> None:
    # What a progress bar does for the time it is drawn: the event lines move with the records.
    first, second = io.StringIO(), io.StringIO()
    handler = handler_on(first, journal=False)
    sink = LogSink("log", handler=handler)
    handler.setStream(second)
    await sink.deliver([stored(1, stuck("A-1")), stored(2, stuck("A-2"))])
    assert first.getvalue() == ""
    lines = [json.loads(line) for line in second.getvalue().splitlines()]
    assert [x["order_id"] for x in lines] == ["A-1", "A-2"]


async def test_a_severity_below_the_loggers_level_writes_nothing() -> None:
    stream = io.StringIO()
    events = logging.getLogger("reconciler.events")
    previous = events.level
    events.setLevel(logging.ERROR)
    try:
        results = await LogSink(handler=handler_on(stream, journal=False)).deliver(
            [stored(1, stuck("A-1"))]
        )
    finally:
        events.setLevel(previous)
    assert results == [Delivered()] and stream.getvalue() == ""


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20),
            st.one_of(st.none(), st.text(max_size=30), st.just(TRICKY), st.sampled_from(OWN)),
            st.sampled_from(["info", "warning", "error"]),
            st.sampled_from([EventType.STUCK, EventType.STATUS_CHANGED, EventType.DISCOVERED]),
        ),
        min_size=1,
        max_size=6,
    ),
    journal=st.booleans(),
)
def test_the_lines_cut_from_the_stored_text_are_the_decoded_lines(
    events: list[tuple[str, str | None, Severity, EventType]], journal: bool
) -> None:
    # A batch: lines of one level and type share their head, each keeps its own fields.
    rows = []
    for seq, (order_id, reference, severity, kind) in enumerate(events, 1):
        event = order_event(
            kind,
            OrderKey("ccv", "default", order_id),
            id=f"id-{seq}",
            time=1795632726.2160404 + seq,
            severity=severity,
            external_reference=reference,
            previous_status="New",
            status="Closed",
            end_state=True,
            via="poll",
        )
        rows.append(
            OutboxEvent(seq, event.id, event.type.value, event.order_id, event.body(), 0, severity)
        )
    lines = event_lines(1795632800.5, rows, journal=journal)
    assert len(lines) == len(rows)
    for row, (level, line), (_, _, severity, _) in zip(rows, lines, events, strict=True):
        flat = event_fields(row.body)
        expected = render(1795632800.5, level, "reconciler.events", row.type, flat, journal=journal)
        assert line == expected
        assert level == logging.getLevelName(severity.upper())
