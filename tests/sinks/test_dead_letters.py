"""Dead letters through a real webhook: `catch-up` and `replay` exit 75 and name the ones they
made, a replayed event gets a fresh `max_age`, a dead letter lets the rest of a replay go, and
a sink a 410 disabled is enabled again without re-sending what it has."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from reconciler import delivery
from reconciler.daemon import Ticks
from tests.conftest import (
    WEBHOOK_SECRET,
    Result,
    WebhookEndpoint,
    call_cli,
    daemon_here,
    poll_until,
    serving,
    webhook_env,
    webhook_sink,
    write_config,
)
from tests.fake_providers import FakeCCV

SECRET = WEBHOOK_SECRET
ORDERS = [f"7c6d5e4f-0000-4000-8000-{n:012d}" for n in range(1, 4)]


@dataclass
class Receiver(WebhookEndpoint):
    """A webhook endpoint that verifies every delivery; it answers `status` for the orders in
    `refused` (all: None), the next of `answers` for the others, then 200."""

    refused: set[str] | None = field(default_factory=set)
    status: int = 500
    answers: list[int] = field(default_factory=list)
    attempts: list[tuple[float, str, str, int]] = field(
        default_factory=list
    )  # (at, id, order, status)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = Webhook(SECRET).verify(body, dict(request.headers))  # raises when forged
        order = str(payload["subject"])
        if self.refused is None or order in self.refused:
            status = self.status
        else:
            status = self.answers.pop(0) if self.answers else 200
        at = asyncio.get_running_loop().time()
        self.attempts.append((at, request.headers["webhook-id"], order, status))
        return web.Response(status=status)

    def since(self, n: int) -> list[tuple[float, str, str, int]]:
        return self.attempts[n:]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(Receiver()) as endpoint:
        yield endpoint


env = webhook_env


async def tracked(tmp_path: Path, fake: FakeCCV, receiver: Receiver, *orders: str) -> Path:
    fake.orders = dict.fromkeys(orders, "New")
    sink = webhook_sink(receiver.url, retry_min="0.2s", max_age="1s", timeout="2s")
    cfg = write_config(tmp_path, ccv=fake, extra=sink)
    assert (await call_cli("--config", cfg, "track", "ccv", *orders, env=env())).code == 0
    return cfg


def line(result: Result, message: str) -> dict[str, Any]:
    [found] = [x for x in result.log_lines() if x["message"] == message]
    return found


def dead_letters(result: Result) -> list[str]:
    return [x["event_id"] for x in result.log_lines() if x["message"] == "sink.dead_letter"]


async def undelivered(cfg: Path) -> list[tuple[str, list[str]]]:
    listed = await call_cli("--config", cfg, "events", "--undelivered", "--json", env=env())
    return [(e["subject"], e["undelivered"]) for e in json.loads(listed.stdout)]


async def test_catch_up_and_replay_exit_75_naming_the_dead_letters_they_made(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    receiver.refused = None  # the webhook answers 500, always
    cfg = await tracked(tmp_path, fake_ccv, receiver, ORDERS[0])
    caught_up = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "4s", env=env())
    assert len(dead_letters(caught_up)) == 1, caught_up.stderr
    assert caught_up.code == 75, caught_up.stderr
    done = line(caught_up, "catch-up.done")
    assert done["dead_letters"] == {"webhook": 1} and done["level"] == "warning"

    # The replayed event, older than max_age by now, is retried for max_age from the replay
    # (at 0.2, 0.6 and 1 s), not dead-lettered at its first failure. Only the count of attempts
    # is asserted: under load the first attempt starts late, which shortens their span.
    before = len(receiver.attempts)
    replay = await call_cli(
        "--config", cfg, "replay", "--sink", "webhook", "--deliver-timeout", "4s", env=env()
    )
    assert replay.code == 75, replay.stderr
    times = [at for at, *_ in receiver.since(before)]
    assert len(times) >= 2, times
    assert len(dead_letters(replay)) == 1
    summary = line(replay, "replay.done")
    assert (summary["dead_letters"], summary["delivered"], summary["undelivered"]) == (1, 0, 0)
    assert await undelivered(cfg) == [(ORDERS[0], ["webhook"])]


async def test_a_replayed_event_older_than_max_age_is_retried_and_delivered(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    receiver.refused = None
    cfg = await tracked(tmp_path, fake_ccv, receiver, ORDERS[0])
    caught_up = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "4s", env=env())
    assert len(dead_letters(caught_up)) == 1, caught_up.stderr

    receiver.refused = set()
    receiver.answers = [503]  # once
    before = len(receiver.attempts)
    replay = await call_cli(
        "--config", cfg, "replay", "--sink", "webhook", "--deliver-timeout", "4s", env=env()
    )
    assert replay.code == 0, replay.stderr
    assert [status for *_, status in receiver.since(before)] == [503, 200]
    assert dead_letters(replay) == []
    assert line(replay, "replay.done")["delivered"] == 1
    assert await undelivered(cfg) == []


async def test_a_dead_letter_lets_the_rest_of_a_replay_be_delivered(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    cfg = await tracked(tmp_path, fake_ccv, receiver, *ORDERS)
    caught_up = await call_cli("--config", cfg, "catch-up", env=env())
    assert caught_up.code == 0, caught_up.stderr
    # The first event in commit order is refused for good; the others are welcome.
    first = receiver.attempts[0][2]
    receiver.refused = {first}
    before = len(receiver.attempts)
    replay = await call_cli(
        "--config", cfg, "replay", "--sink", "webhook", "--deliver-timeout", "4s", env=env()
    )
    assert replay.code == 75, replay.stderr  # one dead letter
    assert len(dead_letters(replay)) == 1
    delivered = {order for _, _, order, status in receiver.since(before) if status == 200}
    assert delivered == set(ORDERS) - {first}
    summary = line(replay, "replay.done")
    assert (summary["dead_letters"], summary["delivered"], summary["undelivered"]) == (1, 2, 0)
    assert await undelivered(cfg) == [(first, ["webhook"])]


async def test_replay_undelivered_enables_a_gone_sink_without_resending_what_it_has(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    cfg = await tracked(tmp_path, fake_ccv, receiver, *ORDERS)
    receiver.answers = [200, 410]  # the second event in commit order: the receiver is gone
    caught_up = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "2s", env=env())
    assert caught_up.code == 75, caught_up.stderr
    hint = line(caught_up, "sink.disabled")["hint"]
    assert "replay --sink webhook --undelivered" in hint
    had = receiver.attempts[0][2]
    missing = {order for order in ORDERS if order != had}
    assert {order for order, _ in await undelivered(cfg)} == missing

    before = len(receiver.attempts)
    replay = await call_cli(
        "--config", cfg, "replay", "--sink", "webhook", "--undelivered", env=env()
    )
    assert replay.code == 0, replay.stderr
    assert line(replay, "replay.queued")["events"] == 2
    assert sorted(order for _, _, order, _ in receiver.since(before)) == sorted(missing)
    assert await undelivered(cfg) == []


async def test_an_event_the_receiver_refuses_alone_holds_back_its_order_only(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    # One payload the receiver rejects (a 400 for good) held every other order's events behind
    # it until max_age (3 days by default): the sink stopped at the first failure and waited.
    fake_ccv.orders = dict.fromkeys(ORDERS[:4], "New")
    sink = webhook_sink(receiver.url, retry_min="1h", max_age="3d", timeout="2s")
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sink)
    assert (await call_cli("--config", cfg, "track", "ccv", *ORDERS[:4], env=env())).code == 0
    receiver.refused = {ORDERS[0]}
    receiver.status = 400
    caught_up = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "3s", env=env())
    assert caught_up.code == 75, caught_up.stderr  # the refused one stays undelivered
    delivered = {order for _, _, order, status in receiver.attempts if status == 200}
    assert delivered == set(ORDERS[1:4])
    assert await undelivered(cfg) == [(ORDERS[0], ["webhook"])]

    # A later event of another order goes at once; one of the refused order waits behind it.
    fake_ccv.orders[ORDERS[1]] = "Completed"
    fake_ccv.orders[ORDERS[0]] = "Completed"
    before = len(receiver.attempts)
    again = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "3s", env=env())
    assert again.code == 75, again.stderr
    sent = [(order, status) for _, _, order, status in receiver.since(before)]
    assert (ORDERS[1], 200) in sent
    assert ORDERS[0] not in {order for order, _ in sent}  # its retry is an hour away


async def test_a_receiver_that_is_down_costs_two_attempts_per_batch(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    receiver.refused = None  # 500 for every event
    fake_ccv.orders = dict.fromkeys(ORDERS, "New")
    sink = webhook_sink(receiver.url, retry_min="1h", max_age="3d", timeout="2s")
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sink)
    assert (await call_cli("--config", cfg, "track", "ccv", *ORDERS, env=env())).code == 0
    caught_up = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "3s", env=env())
    assert caught_up.code == 75, caught_up.stderr
    assert len(receiver.attempts) == 2  # the first event and one of another order: then it waits


async def test_replay_beside_the_daemon_delivers_within_a_tick_though_the_sink_was_waiting(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    # The daemon held the sink's pause in memory: a replay after the receiver was mended waited
    # for the old retry time (up to retry_max, an hour), not "within 5 s".
    receiver.refused = None  # down: 500 for every event
    fake_ccv.orders = dict.fromkeys(ORDERS[:3], "New")
    sink = webhook_sink(receiver.url, retry_min="1h", max_age="3d", timeout="2s")
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sink)
    assert (await call_cli("--config", cfg, "track", "ccv", *ORDERS[:3], env=env())).code == 0
    # The outbox reads the store every 0.2 s, not 5 s: within a tick is the test's, whatever
    # the tick; the sink's pause (an hour) is what the replay must not wait for.
    async with daemon_here(cfg, env(), ticks=Ticks(outbox_s=0.2)):
        await poll_until(lambda: len(receiver.attempts) == 2, 60, "two refusals: down")
        receiver.refused = set()  # mended
        replay = await call_cli(
            "--config", cfg, "replay", "--sink", "webhook", "--undelivered", env=env()
        )
        assert replay.code == 0, replay.stderr
        await poll_until(
            lambda: (
                {o for _, _, o, status in receiver.attempts if status == 200} == set(ORDERS[:3])
            ),
            delivery.TICK_S + 5,
            "the replayed events",
        )


async def test_events_a_down_receiver_missed_past_max_age_are_sent_when_it_is_back(
    tmp_path: Path, fake_ccv: FakeCCV, receiver: Receiver
) -> None:
    # max_age bounds how long a failed delivery is retried, not how late an event is sent: a
    # receiver down longer than max_age gets, once back, every event it missed (a rule that
    # dead-lettered them unsent also cut the tail of any long backlog, a replay's included).
    receiver.refused = None  # down
    fake_ccv.orders = dict.fromkeys(ORDERS, "New")
    sink = webhook_sink(receiver.url, retry_min="1s", max_age="1h", timeout="2s")
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sink)
    assert (await call_cli("--config", cfg, "track", "ccv", *ORDERS, env=env())).code == 0
    caught_up = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "2s", env=env())
    assert caught_up.code == 75, caught_up.stderr
    # Two hours on (the events and their retry times as if made then), the receiver is back.
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        conn.execute("UPDATE events SET time = time - 7200")
        # Only retry times: 0 marks an event never attempted (an earlier one's failure left
        # it untouched), and shifted below 0 it was neither new nor due, never sent (the test
        # failed now and then, by which events the first catch-up had reached).
        conn.execute(
            "UPDATE deliveries SET next_attempt_at = next_attempt_at - 7200 "
            "WHERE next_attempt_at > 0"
        )
    conn.close()
    receiver.refused = set()
    before = len(receiver.attempts)

    again = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "5s", env=env())
    assert again.code == 0, again.stderr
    assert dead_letters(again) == []
    delivered = sorted(order for _, _, order, status in receiver.since(before) if status == 200)
    assert delivered == sorted(ORDERS)
    assert await undelivered(cfg) == []
