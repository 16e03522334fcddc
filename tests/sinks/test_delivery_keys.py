"""Events that name no order keep their order too: a `source.recovered` never reaches a sink
before the `source.failed` it follows, nor an `order.submit_resolved` before its
`order.submit_uncertain`, while that one waits for its retry; other keys' events go on. The real
store and dispatcher, a webhook receiver on 127.0.0.1 and a command sink's program, each
refusing the events of the types the test names, and a clock the test moves."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from reconciler.config import Secret
from reconciler.config.schema import CommandSinkConfig, SinkConfig, WebhookSinkConfig
from reconciler.delivery import Delivery
from reconciler.events import Event, submit_resolved_event, submit_uncertain_event
from reconciler.model import EventType, Severity
from reconciler.sinks.base import Sink
from reconciler.sinks.command import CommandSink
from reconciler.sinks.webhook import WebhookSink
from reconciler.store import Store
from tests.conftest import WEBHOOK_SECRET, WebhookEndpoint, serving

ORDER = "9a8b7c6d-0000-4000-8000-0000000000aa"
OTHER = "9a8b7c6d-0000-4000-8000-0000000000bb"
REF = "ref-000042"


@dataclass
class Receiver(WebhookEndpoint):
    """Answers 500 to the events of the types in `refused`, 200 to the others (`taken`)."""

    refused: set[str] = field(default_factory=set)
    taken: list[tuple[str, str | None]] = field(default_factory=list)  # (type, subject)
    asked: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        self.asked.append(payload["type"])
        if payload["type"] in self.refused:
            return web.Response(status=500)
        self.taken.append((payload["type"], payload.get("subject")))
        return web.Response(status=200)


# The command sink's program: exits 1 for a type listed in the file `refused`, else appends
# the event's type and order id to the file `taken`.
PROGRAM = """
import os, sys
here = sys.argv[1]
kind, order = os.environ["RECONCILER_EVENT_TYPE"], os.environ["RECONCILER_ORDER_ID"]
sys.stdin.read()
with open(os.path.join(here, "refused")) as f:
    if kind in f.read().split():
        sys.exit(1)
with open(os.path.join(here, "taken"), "a") as f:
    f.write(f"{kind} {order}\\n")
"""


@dataclass
class Target:
    """A sink and what its receiver refuses and took."""

    sink: Sink
    config: SinkConfig
    refuse: Callable[[set[str]], None]
    taken: Callable[[], list[tuple[str, str | None]]]


@asynccontextmanager
async def webhook() -> AsyncIterator[Target]:
    async with serving(Receiver()) as receiver:
        config = WebhookSinkConfig(
            name="hooks", url=receiver.url, secret=Secret(WEBHOOK_SECRET), retry_min_s=60.0
        )

        def refuse(types: set[str]) -> None:
            receiver.refused = types

        sink = WebhookSink(config)
        try:
            yield Target(sink, config, refuse, lambda: list(receiver.taken))
        finally:
            await sink.close()


@asynccontextmanager
async def command(here: Path) -> AsyncIterator[Target]:
    (here / "refused").write_text("")
    config = CommandSinkConfig(
        name="hooks", command=(sys.executable, "-c", PROGRAM, str(here)), retry_min_s=60.0
    )

    def refuse(types: set[str]) -> None:
        (here / "refused").write_text(" ".join(types))

    def taken() -> list[tuple[str, str | None]]:
        path = here / "taken"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(k, o or None) for k, _, o in (line.partition(" ") for line in lines)]

    sink = CommandSink(config)
    try:
        yield Target(sink, config, refuse, taken)
    finally:
        await sink.close()


@pytest.fixture(params=["webhook", "command"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    made = webhook() if request.param == "webhook" else command(tmp_path)
    async with made as t:
        yield t


class Lane:
    """The store and the dispatcher's one lane, run by hand at the test's clock."""

    def __init__(self, store: Store, target: Target) -> None:
        self.store = store
        self.clock = [1_000_000.0]
        self.delivery = Delivery(store, [(target.sink, target.config)], clock=lambda: self.clock[0])
        self.n = 0

    async def add(self, *events: Event) -> None:
        async with self.store.transaction():
            await self.store.events.add(list(events))

    async def run(self) -> None:
        """Deliver until the lane waits (for a retry, or for nothing)."""
        lane = self.delivery.lanes[0]
        cutoff = self.delivery._cutoffs[lane.config.name]
        while await self.delivery._lane_once(lane, cutoff) == 0:
            pass

    def later(self) -> None:
        """Past every retry time (and every pause of the lane)."""
        self.clock[0] += 3600


@pytest.fixture
async def lane(tmp_path: Path, target: Target) -> AsyncIterator[Lane]:
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    try:
        yield Lane(store, target)
    finally:
        await store.close()


def health(kind: EventType, at: float, account: str = "default") -> Event:
    data = {"source": "ccv", "account": account, "reason": "maintenance"}
    severity: Severity = "error" if kind is EventType.SOURCE_FAILED else "info"
    return Event(f"{kind.value}-{account}-{at}", kind, at, "ccv", account, None, severity, data)


def order_event(order_id: str, at: float, status: str = "New") -> Event:
    data = {"source": "ccv", "account": "default", "order_id": order_id, "status": status}
    event_id = f"o-{order_id}-{status}"
    return Event(event_id, EventType.DISCOVERED, at, "ccv", "default", order_id, "info", data)


def types(taken: Sequence[tuple[str, str | None]]) -> list[str]:
    return [kind for kind, _ in taken]


def before(taken: Sequence[tuple[str, str | None]], first: str, second: str) -> bool:
    return types(taken).index(first) < types(taken).index(second)


FAILED, RECOVERED = EventType.SOURCE_FAILED.value, EventType.SOURCE_RECOVERED.value
UNCERTAIN, RESOLVED = EventType.SUBMIT_UNCERTAIN.value, EventType.SUBMIT_RESOLVED.value


async def test_recovered_waits_behind_a_failed_waiting_for_its_retry(
    lane: Lane, target: Target
) -> None:
    # The maintenance fault's case: `source.failed` refused, the account recovers meanwhile.
    target.refuse({FAILED})
    now = lane.clock[0]
    await lane.add(health(EventType.SOURCE_FAILED, now))
    await lane.run()
    await lane.add(health(EventType.SOURCE_RECOVERED, now + 1), order_event(ORDER, now + 1))
    await lane.run()  # before the failed one's retry time
    # Another key's event goes on; the recovery waits (before: delivered at once, and the
    # receiver's last word on the healthy account was the failure retried after it).
    assert types(target.taken()) == [EventType.DISCOVERED.value]
    target.refuse(set())
    lane.later()
    await lane.run()
    assert types(target.taken())[1:] == [FAILED, RECOVERED]


async def test_recovered_is_not_attempted_after_its_failed_is_refused_in_one_batch(
    lane: Lane, target: Target
) -> None:
    target.refuse({FAILED})
    now = lane.clock[0]
    await lane.add(
        health(EventType.SOURCE_FAILED, now),
        health(EventType.SOURCE_RECOVERED, now + 1),
        # Another account's health is another key, and an order's too: they go on.
        health(EventType.SOURCE_RECOVERED, now + 1, account="shop2"),
        order_event(OTHER, now + 1),
    )
    await lane.run()
    assert types(target.taken()) == [RECOVERED, EventType.DISCOVERED.value]
    target.refuse(set())
    lane.later()
    await lane.run()
    assert types(target.taken())[2:] == [FAILED, RECOVERED]


def uncertain(at: float) -> Event:
    return submit_uncertain_event(
        "store", 7, account="default", reference=REF, time=at, reason="timeout"
    )


def resolved(at: float) -> Event:
    return submit_resolved_event(
        "store",
        7,
        account="default",
        reference=REF,
        uncertain_at=at - 1,
        reason="timeout",
        order_id=ORDER,
        how="track",
        time=at,
    )


async def test_submit_resolved_waits_behind_its_submit_uncertain(
    lane: Lane, target: Target
) -> None:
    # `ccv submit` timed out; `track ccv ID --ref REF` found the order and settled it.
    target.refuse({UNCERTAIN})
    now = lane.clock[0]
    await lane.add(uncertain(now))
    await lane.run()
    await lane.add(order_event(ORDER, now + 1), resolved(now + 1), order_event(OTHER, now + 1))
    await lane.run()
    # The order's discovery goes on (another key); the resolution waits for its uncertain one.
    discovered = EventType.DISCOVERED.value
    assert target.taken() == [(discovered, ORDER), (discovered, OTHER)]
    target.refuse(set())
    lane.later()
    await lane.run()
    assert types(target.taken())[2:] == [UNCERTAIN, RESOLVED]
    assert before(target.taken(), UNCERTAIN, RESOLVED)


async def test_submit_resolved_of_another_reference_goes_on(lane: Lane, target: Target) -> None:
    target.refuse({UNCERTAIN})
    now = lane.clock[0]
    other = submit_resolved_event(
        "store",
        8,
        account="default",
        reference="ref-other",
        uncertain_at=now - 5,
        reason="timeout",
        order_id=OTHER,
        how="notification",
        time=now,
    )
    await lane.add(uncertain(now), other, resolved(now + 1))
    await lane.run()
    assert target.taken() == [(RESOLVED, OTHER)]
