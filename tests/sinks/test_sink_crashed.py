"""A sink that raises (a bug) is logged as `sink.crashed` with its traceback, every secret of the
config in it masked as in every other reason a sink gives: an exception's text may quote one (a
header, a URL, what a library echoed). Through the real dispatcher, a real SQLite file and the
log's own JSON lines."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler.config.schema import LogSinkConfig
from reconciler.delivery import Delivery
from reconciler.events import Event
from reconciler.logs import logging_set_up
from reconciler.model import EventType
from reconciler.sinks.base import Cutoff, DeliveryResult, OutboxEvent, deliver_in_order
from reconciler.store import Store

PASSWORD = "SUPERSECRETPW123"
WEBHOOK_SECRET = "whsec_GW08Egn45XjtupxtkQ4NQPz02I0xp/gj"
SECRETS = (PASSWORD, WEBHOOK_SECRET)


def leaks(text: str | bytes) -> list[str]:
    low = text.lower() if isinstance(text, str) else text.lower().decode("latin-1")
    return [s for s in SECRETS if s.lower() in low or s[:8].lower() in low]


class EventCrash:
    """Sends one event at a time; its attempt raises, its text quoting the secrets (the way a
    library's error may echo a header or a form it was given)."""

    name = "one-by-one"

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        return await deliver_in_order(events, self._attempt, cutoff)

    async def _attempt(self, event: OutboxEvent) -> DeliveryResult:
        try:
            raise KeyError(f"x_password={PASSWORD}")
        except KeyError as exc:
            # A chained cause is in the traceback too.
            raise ValueError(f"cannot sign with {WEBHOOK_SECRET}") from exc

    async def close(self) -> None:
        pass


class BatchCrash:
    """Raises out of `deliver` itself, for the whole batch."""

    name = "at-once"

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        raise RuntimeError(f"session for {PASSWORD} / {WEBHOOK_SECRET.upper()} went away")

    async def close(self) -> None:
        pass


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_a_crash_s_traceback_keeps_no_secret_in_the_log_or_the_database(
    tmp_path: Path,
) -> None:
    names = ("one-by-one", "at-once")
    store = await Store.open(tmp_path / "r.db", sinks=names)
    delivery = Delivery(
        store,
        [
            (EventCrash(), LogSinkConfig(name=names[0])),
            (BatchCrash(), LogSinkConfig(name=names[1])),
        ],
        secrets=list(SECRETS),
    )
    data = {"source": "ccnow", "account": "default", "order_id": "396-10-1142"}
    event = Event(
        "e-1",
        EventType.STATUS_CHANGED,
        time.time(),
        "ccnow",
        "default",
        "396-10-1142",
        "info",
        data,
    )
    stream = io.StringIO()
    try:
        async with store.transaction():
            await store.events.add([event])
        with logging_set_up("info", stream):
            assert not await delivery.drain(20.0, retries=False)
    finally:
        await store.close()
    assert not leaks(stream.getvalue())
    said = lines(stream.getvalue())
    crashed = [line for line in said if line["message"] == "sink.crashed"]
    assert sorted(line["sink"] for line in crashed) == sorted(names)
    for line in crashed:
        # Still a traceback a developer can read: where it was raised, and what.
        assert "Traceback (most recent call last)" in line["traceback"]
        assert "***" in line["traceback"]
    by_sink = {line["sink"]: line for line in crashed}
    assert "KeyError" in by_sink["one-by-one"]["traceback"]
    assert "ValueError: cannot sign with ***" in by_sink["one-by-one"]["traceback"]
    assert by_sink["one-by-one"]["event_id"] == "e-1"
    assert "RuntimeError: session for *** / *** went away" in by_sink["at-once"]["traceback"]
    retried = [line for line in said if line["message"] == "sink.retry"]
    assert sorted(line["reason"] for line in retried) == [
        "sink raised RuntimeError",
        "sink raised ValueError",
    ]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("r.db*") if p.is_file())
    assert b"sink raised ValueError" in stored  # `last_error` says what, with no secret
    assert not leaks(stored)
