"""Sinks through the outbox, end to end: Standard Webhooks signatures, retries, dead letters,
`events --undelivered`, `replay`, and catch-up's wait for delivery."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from reconciler import delivery
from reconciler.daemon import Ticks
from tests.conftest import (
    WEBHOOK_SECRET,
    WebhookEndpoint,
    call_cli,
    daemon,
    daemon_here,
    poll_until,
    read_events,
    serving,
    webhook_env,
    webhook_sink,
    write_config,
)
from tests.fake_providers import FakeCCV

SECRET = WEBHOOK_SECRET
ORDER = "9a8b7c6d-0000-4000-8000-000000000001"
ORDER_2 = "9a8b7c6d-0000-4000-8000-000000000002"


@dataclass
class Receiver(WebhookEndpoint):
    """A webhook endpoint that verifies every delivery with the standardwebhooks library."""

    answers: list[int] = field(default_factory=list)  # used one per request, then 200
    attempts: list[tuple[float, str, dict[str, object]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = Webhook(SECRET).verify(body, dict(request.headers))  # raises when forged
        self.attempts.append(
            (asyncio.get_running_loop().time(), request.headers["webhook-id"], payload)
        )
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(Receiver()) as endpoint:
        yield endpoint


def webhook_config(tmp_path: Path, fake: FakeCCV, receiver: Receiver, retry_min: str) -> Path:
    sink = webhook_sink(receiver.url, retry_min=retry_min, timeout="2s")
    return write_config(tmp_path, ccv=fake, extra=sink)


env = webhook_env


async def test_webhook_retries_with_one_id_and_stops_after_2xx(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    fake_ccv.orders = {ORDER: "New"}
    receiver.answers = [500, 503]
    cfg = webhook_config(tmp_path, fake_ccv, receiver, "0.3s")
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER, env=env())).code == 0
    result = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "20s", env=env())
    assert result.code == 0, result.stderr
    assert len(receiver.attempts) == 3  # two failures, one success, then nothing more
    times, ids, payloads = zip(*receiver.attempts, strict=True)
    assert len(set(ids)) == 1
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(times))
    assert payloads[-1]["type"] == "order.discovered"
    assert payloads[-1]["id"] == ids[0]
    undelivered = await call_cli("--config", cfg, "events", "--undelivered", "--json", env=env())
    assert json.loads(undelivered.stdout) == []


async def test_undelivered_events_make_catch_up_exit_75_and_replay_sends_them(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    fake_ccv.orders = {ORDER: "New"}
    receiver.answers = [500] * 100
    cfg = webhook_config(tmp_path, fake_ccv, receiver, "5s")
    await call_cli("--config", cfg, "track", "ccv", ORDER, env=env())
    result = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s", env=env())
    assert result.code == 75
    listed = json.loads(
        (await call_cli("--config", cfg, "events", "--undelivered", "--json", env=env())).stdout
    )
    assert [(e["subject"], e["undelivered"]) for e in listed] == [(ORDER, ["webhook"])]
    first_id = receiver.attempts[0][1]

    receiver.answers = []
    replay = await call_cli("--config", cfg, "replay", "--sink", "webhook", env=env())
    assert replay.code == 0, replay.stderr
    assert receiver.attempts[-1][1] == first_id  # the same id, again
    listed = json.loads(
        (await call_cli("--config", cfg, "events", "--undelivered", "--json", env=env())).stdout
    )
    assert listed == []


async def test_gone_receiver_disables_the_sink(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    fake_ccv.orders = {ORDER: "New"}
    receiver.answers = [410]
    cfg = webhook_config(tmp_path, fake_ccv, receiver, "0.1s")
    await call_cli("--config", cfg, "track", "ccv", ORDER, env=env())
    result = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "3s", env=env())
    assert result.code == 75
    assert len(receiver.attempts) == 1, result.stderr
    disabled = [line for line in result.log_lines() if line["message"] == "sink.disabled"]
    assert len(disabled) == 1 and disabled[0]["level"] == "error"  # once, not again at the end
    assert "replay --sink" in disabled[0]["hint"]
    assert SECRET not in result.stderr


async def test_dead_letter_after_max_age(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    fake_ccv.orders = {ORDER: "New"}
    receiver.answers = [500] * 100
    sink = (
        f'[[sinks]]\ntype = "webhook"\nurl = "{receiver.url}"\nretry_min = "0.2s"\nmax_age = "1s"\n'
    )
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sink)
    await call_cli("--config", cfg, "track", "ccv", ORDER, env=env())
    result = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "3s", env=env())
    dead = [line for line in result.log_lines() if line["message"] == "sink.dead_letter"]
    assert len(dead) == 1 and dead[0]["level"] == "error"
    # Given up only once the event reached max_age, not when the next retry would pass it: at
    # a second from the event's creation (retries at 0.2, 0.6 s, then at 1 s after a first
    # attempt at once). Measured from the creation, not the first attempt, which a loaded
    # machine delays (0.3 s after it, the third attempt's failure came at the age).
    with closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        (created,) = conn.execute("SELECT time FROM events").fetchone()
    given_up = datetime.fromisoformat(dead[0]["time"].replace("Z", "+00:00")).timestamp()
    assert given_up - created >= 1.0 - 0.001, (given_up, created)  # its time: milliseconds
    listed = json.loads(
        (await call_cli("--config", cfg, "events", "--undelivered", "--json", env=env())).stdout
    )
    assert [e["undelivered"] for e in listed] == [["webhook"]]  # kept in the database


def pending(tmp_path: Path) -> list[tuple[str, int, float]]:
    """Return the webhook's pending deliveries: (event id, attempts, next attempt time)."""
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        return conn.execute(
            "SELECT e.id, d.attempts, d.next_attempt_at FROM deliveries d "
            "JOIN events e ON e.seq = d.event_seq WHERE d.sink = 'webhook' "
            "AND d.state = 'pending' ORDER BY e.seq"
        ).fetchall()


async def test_an_event_waiting_for_its_retry_is_delivered_after_a_restart(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    # Deliveries fail, the daemon is killed, the endpoint recovers, the daemon restarts: the
    # event that failed goes at its retry time, not stranded while the newer one is delivered.
    fake_ccv.orders = {ORDER: "New", ORDER_2: "New"}
    receiver.answers = [500]
    cfg = webhook_config(tmp_path, fake_ccv, receiver, "2s")
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER, ORDER_2, env=env())).code == 0
    async with daemon(cfg, env()) as proc:
        await poll_until(
            lambda: any(attempts == 1 for _, attempts, _ in pending(tmp_path)),
            20,
            "the failed attempt recorded",
        )
        proc.kill()
        await proc.wait()
    failed_id = receiver.attempts[0][1]
    [retry_at] = [at for _, attempts, at in pending(tmp_path) if attempts == 1]
    async with daemon_here(cfg, env(), ticks=Ticks(outbox_s=0.2)):
        # Delivered by its retry time plus a tick and the daemon's start (seconds alone, many
        # more on a loaded machine), whatever path it took.
        within = retry_at - time.time() + delivery.TICK_S + 30
        await poll_until(lambda: not pending(tmp_path), within, "every event delivered")
    delivered = [id for _, id, _ in receiver.attempts[1:]]
    assert sorted(delivered) == sorted(e["id"] for e in read_events(tmp_path))
    assert failed_id in delivered


def status_of(payload: dict[str, object]) -> object:
    data = payload["data"]
    assert isinstance(data, dict)
    return data["status"]


async def test_an_order_s_events_reach_a_sink_in_the_order_they_happened(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    # The first event fails and waits for its retry; the order's next event, newer, waits for
    # it (another order's event need not).
    fake_ccv.orders = {ORDER: "Processing"}
    receiver.answers = [500]
    cfg = webhook_config(tmp_path, fake_ccv, receiver, "1s")
    await call_cli("--config", cfg, "track", "ccv", ORDER, env=env())
    first = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "0.5s", env=env())
    assert first.code == 75
    [(_, waiting_id, _)] = receiver.attempts

    fake_ccv.orders = {ORDER: "AwaitingPayment", ORDER_2: "Processing"}
    await call_cli("--config", cfg, "track", "ccv", ORDER_2, env=env())
    second = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "20s", env=env())
    assert second.code == 0, second.stderr
    got = [(p["subject"], status_of(p)) for _, _, p in receiver.attempts[1:]]
    assert got.index((ORDER, "Processing")) < got.index((ORDER, "AwaitingPayment"))
    assert receiver.attempts[1 + got.index((ORDER, "Processing"))][1] == waiting_id


async def test_replay_names_only_sinks_that_exist(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    # With a log sink of its own name there is no sink "log": queueing events for it would
    # leave them undelivered for ever.
    cfg = write_config(tmp_path, ccv=fake_ccv, extra='[[sinks]]\ntype = "log"\nname = "journal"\n')
    refused = await call_cli("--config", cfg, "replay", "--sink", "log", env=env())
    assert refused.code == 2  # a usage error
    assert "no sink named 'log' (jsonl, journal)" in refused.stderr
    replay = await call_cli("--config", cfg, "replay", "--sink", "journal", env=env())
    assert replay.code == 0, replay.stderr
    undelivered = await call_cli("--config", cfg, "events", "--undelivered", "--json", env=env())
    assert json.loads(undelivered.stdout) == []


async def test_replay_enables_a_gone_sink_of_the_running_daemon_again(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    # The sink.disabled line's hint: `reconciler replay --sink NAME` enables it again. With the
    # daemon running, the replay only queues the events: the daemon must notice the sink is back.
    fake_ccv.orders = {ORDER: "New"}
    receiver.answers = [410]
    cfg = webhook_config(tmp_path, fake_ccv, receiver, "0.1s")
    await call_cli("--config", cfg, "track", "ccv", ORDER, env=env())
    # The outbox reads the store every 0.2 s, not 5 s: that the replay is noticed is the test's.
    async with daemon_here(cfg, env(), ticks=Ticks(outbox_s=0.2)):
        # Bounds for a loaded machine (the suite in parallel, other jobs beside it): a start
        # and a check there took several times the seconds they take alone.
        await poll_until(lambda: len(receiver.attempts) == 1, 60, "the 410")
        replay = await call_cli("--config", cfg, "replay", "--sink", "webhook", env=env())
        assert replay.code == 0, replay.stderr
        queued = [line for line in replay.log_lines() if line["message"] == "replay.queued"]
        assert queued[0]["events"] == 1  # the event, not the sink's row deleted beside it
        await poll_until(lambda: len(receiver.attempts) == 2, 60, "redelivery")
    assert receiver.attempts[1][1] == receiver.attempts[0][1]


async def test_replay_without_a_daemon_delivers_to_its_sink_alone(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    # A webhook that keeps failing must neither get the replay of another sink nor make it 75.
    fake_ccv.orders = {ORDER: "New"}
    receiver.answers = [500] * 100
    cfg = webhook_config(tmp_path, fake_ccv, receiver, "0.1s")
    await call_cli("--config", cfg, "track", "ccv", ORDER, env=env())
    result = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "0.5s", env=env())
    assert result.code == 75
    tried = len(receiver.attempts)
    replay = await call_cli(
        "--config", cfg, "replay", "--sink", "jsonl", "--deliver-timeout", "2s", env=env()
    )
    assert replay.code == 0, replay.stderr
    assert len(receiver.attempts) == tried
    assert len(read_events(tmp_path)) == 2  # the jsonl sink got the event again
