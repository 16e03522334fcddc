"""The log sink: each event as one JSON log line, written through the log handler it is given."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import TextIO

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config import load_config
from reconciler.events import Event, order_event
from reconciler.logs import JsonFormatter, render
from reconciler.model import EventType, OrderKey, Severity
from reconciler.runtime import Runtime
from reconciler.sinks import build_sinks
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


@settings(max_examples=80, deadline=None)
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


CONFIG = """
[[ccv]]
name = "shop"
base_url = "https://ccv.example"
api_key = "k1"
"""


async def test_the_log_sink_a_config_gets_writes_through_the_handler_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # build_sinks made the log sink look the `reconciler` logger's handler up itself: a writer
    # whose log went elsewhere (a test's, an embedding program's) could not say where.
    stream = io.StringIO()
    (tmp_path / "r.toml").write_text(f'[store]\npath = "{tmp_path / "r.db"}"\n{CONFIG}')
    config = load_config(tmp_path / "r.toml")
    async with aiohttp.ClientSession() as session:
        ((sink, sc),) = build_sinks(config, session, handler_on(stream, journal=False))
    assert sc.type == "log"
    await sink.deliver([stored(1, stuck("A-1"))])
    assert [json.loads(line)["order_id"] for line in stream.getvalue().splitlines()] == ["A-1"]
    assert capsys.readouterr().err == ""


async def test_a_writers_events_go_to_the_log_handler_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    (tmp_path / "r.toml").write_text(f'[store]\npath = "{tmp_path / "r.db"}"\n{CONFIG}')
    config = load_config(tmp_path / "r.toml")
    async with Runtime(config, log=handler_on(stream, journal=False)) as rt:
        async with rt.store.transaction():
            await rt.store.events.add([stuck("A-1")])
        await rt.delivery.drain(10)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [x["order_id"] for x in lines if x.get("event_type")] == ["A-1"]
    assert capsys.readouterr().err == ""
