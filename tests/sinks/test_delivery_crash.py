"""A daemon killed with SIGKILL in the middle of a delivery: what a receiver confirmed before the
kill is not sent again, and a command sink's program gets its whole event all the same."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from reconciler.config import WebhookSinkConfig
from reconciler.config.secret import Secret
from reconciler.delivery import Delivery
from reconciler.sinks.webhook import WebhookSink
from reconciler.store import Store
from tests.conftest import (
    WEBHOOK_SECRET,
    WebhookEndpoint,
    call_cli,
    daemon,
    daemon_here,
    poll_until,
    run_cli,
    serving,
    webhook_env,
    webhook_sink,
    write_config,
)
from tests.fake_providers import FakeCCV
from tests.sinks.test_delivery_refused import order_event

ORDERS = [f"6c7d8e9f-0000-4000-8000-{n:012d}" for n in range(1, 13)]
ANSWERED = 5  # the receiver answers this many events, then hangs on the next


@dataclass
class HangingWebhook(WebhookEndpoint):
    """A webhook endpoint that verifies each delivery; while `refusing`, it answers 503; then
    it answers `ANSWERED` events with 200 and holds the next one until `released`."""

    refusing: bool = True
    answered: list[str] = field(default_factory=list)  # webhook-id of each 200, in order
    posted: list[str] = field(default_factory=list)  # webhook-id of every request after refusing
    hanging: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        Webhook(WEBHOOK_SECRET).verify(body, dict(request.headers))  # raises when forged
        if self.refusing:
            return web.Response(status=503)
        event_id = request.headers["webhook-id"]
        self.posted.append(event_id)
        if len(self.answered) == ANSWERED and not self.released.is_set():
            self.hanging.set()
            await self.released.wait()  # a receiver stuck on this event
        self.answered.append(event_id)
        return web.Response(status=200)


@pytest.fixture
async def webhook() -> AsyncIterator[HangingWebhook]:
    async with serving(HangingWebhook()) as endpoint:
        try:
            yield endpoint
        finally:
            endpoint.released.set()


def delivered(tmp_path: Path, sink: str) -> set[str]:
    """The ids of the events the store records as delivered to `sink`."""
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        rows = conn.execute(
            "SELECT e.id FROM deliveries d JOIN events e ON e.seq = d.event_seq "
            "WHERE d.sink = ? AND d.state = 'delivered'",
            (sink,),
        ).fetchall()
    return {r[0] for r in rows}


def pending(tmp_path: Path, sink: str) -> int:
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        row = conn.execute(
            "SELECT count(*) FROM deliveries WHERE sink = ? AND state = 'pending'", (sink,)
        ).fetchone()
    return int(row[0])


async def test_a_daemon_killed_in_mid_batch_does_not_send_again_what_was_confirmed(
    tmp_path: Path, fake_ccv: FakeCCV, webhook: HangingWebhook
) -> None:
    # Every event queued first (the receiver refusing), so that the daemon has them all in one
    # batch: five answered at once, the sixth hangs (its timeout is 30 s), and the daemon is
    # killed while it waits. Before, the batch's confirmations were recorded at its end only,
    # and the restarted daemon sent those five again (a slow receiver and a daemon killed more
    # often than a batch takes: no progress at all).
    fake_ccv.orders = dict.fromkeys(ORDERS, "New")
    sink = webhook_sink(webhook.url, retry_min="0.1s", timeout="30s")
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sink)
    env = webhook_env()
    assert (await call_cli("--config", cfg, "track", "ccv", *ORDERS, env=env)).code == 0
    queued = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "0s", env=env)
    assert queued.code == 75 and pending(tmp_path, "webhook") == len(ORDERS), queued.stderr

    webhook.refusing = False
    async with daemon(cfg, env) as proc:
        await asyncio.wait_for(webhook.hanging.wait(), 20)
        confirmed = set(webhook.answered)
        assert len(confirmed) == ANSWERED
        # Recorded within a second or so of their answers, while the batch still waits for
        # the sixth (before: at its end, 30 s on). Killed once they are, or after 5 s.
        with contextlib.suppress(AssertionError):
            await poll_until(lambda: confirmed <= delivered(tmp_path, "webhook"), 5, "marks")
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    webhook.released.set()

    before = len(webhook.posted)
    async with daemon_here(cfg, env):
        await poll_until(lambda: not pending(tmp_path, "webhook"), 20, "every event delivered")
    again = webhook.posted[before:]
    assert not confirmed & set(again), "events the receiver confirmed before the kill, again"
    assert delivered(tmp_path, "webhook") >= set(again) | confirmed


# Kills the process that runs it (reconciler) at once, then keeps what it finds on stdin in a
# file of its own, named when complete.
KILL_THEN_READ = 'kill -KILL "$PPID"; cat > "$1/$$.part"; mv "$1/$$.part" "$1/$$"'
ROUNDS = 6  # with the write after the start put back, 16 of 20 rounds read nothing


async def test_a_program_whose_reconciler_is_killed_at_its_start_gets_the_whole_event(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The kill comes once the program runs; before, the event was written to its stdin after
    # the start, and a program whose reconciler was killed in between read an empty input
    # (16 rounds in 20, twice, with the event written after the start again; so a few rounds,
    # each a process: 3 miss that in 125 runs). Now its stdin holds the event before it starts.
    got = tmp_path / "got"
    got.mkdir()
    command = ["/bin/sh", "-c", KILL_THEN_READ, "sh", str(got)]
    sink = f'[[sinks]]\ntype = "command"\nname = "cmd"\ncommand = {json.dumps(command)}\n'
    fake_ccv.orders = {ORDERS[0]: "New"}
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sink)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDERS[0])).code == 0

    def kept() -> int:
        return len([p for p in got.iterdir() if p.suffix != ".part"])

    async def killed_by_its_program() -> None:
        before = kept()
        # A process: the sink's program kills its parent, the command.
        result = await run_cli("--config", cfg, "catch-up")
        assert result.code == -signal.SIGKILL, result.stderr
        await poll_until(lambda: kept() > before, 60, "the program's input kept")

    for _ in range(ROUNDS):  # the same event each time: a delivery the kill cut is not recorded
        await killed_by_its_program()
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        (body,) = conn.execute("SELECT body FROM events").fetchone()
    assert [p.read_bytes() for p in got.iterdir()] == [body + b"\n"] * ROUNDS


async def test_a_batch_records_what_its_receiver_confirmed_by_fifties_in_one_write_each(
    tmp_path: Path, webhook: HangingWebhook
) -> None:
    # 120 events in one batch to a quick receiver: recorded after 50, 100 and at the end (and
    # once more for each second the batch took), not once per event nor only at the end.
    webhook.refusing = False
    webhook.released.set()
    store = await Store.open(tmp_path / "reconciler.db", sinks=("webhook",))
    config = WebhookSinkConfig(
        name="webhook", url=webhook.url, secret=Secret(WEBHOOK_SECRET), timeout_s=10.0
    )
    sink = WebhookSink(config)
    calls = itertools.count(1)  # each write's time its own: one delivered_at per write
    delivery = Delivery(store, [(sink, config)], clock=lambda: float(next(calls)))
    try:
        async with store.transaction():
            await store.events.add([order_event(n, f"o-{n}", 1.0) for n in range(120)])
        started = time.monotonic()
        assert await delivery.drain(30.0)
        took = time.monotonic() - started
    finally:
        await sink.close()
        await store.close()
    assert len(webhook.answered) == 120
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        (writes,) = conn.execute("SELECT count(DISTINCT delivered_at) FROM deliveries").fetchone()
    assert 3 <= writes <= 3 + math.ceil(took)
