"""A request's CCNow commands are its own to send: the daemon's queue (its tick's `send_due`)
did not claim one while the request that recorded it was still sending, against a fake CCNow
server on 127.0.0.1 and a real store. It did: a `ccnow ship` through a running daemon then
answered the command `sending: on its way` (75) for a post of the queue's, though the ship was
on its way to succeed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.runtime import writer_unless_held
from reconciler.writes.ccnow_form import build
from tests.conftest import cli_env
from tests.fake_providers import FakeCCNow, Seen
from tests.writes.test_ccnow_actions import A, B, commands, tracked


async def test_the_queue_leaves_a_requests_commands_to_the_request(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    # One order a post: the request's second command is queued while its first is out.
    cfg.write_text(cfg.read_text().replace("batch_size = 25", "batch_size = 1"))
    for name, value in cli_env().items():
        if name.startswith("RECONCILER_"):
            monkeypatch.setenv(name, value)
    first_out, queue_out = fake_ccnow.release, asyncio.Event()

    def held(seen: Seen) -> bool:
        # Every post of an action before the first one's answer waits: the first for
        # `first_out`, any other (the queue's) for `queue_out`, set only after the request ended.
        return "x_action_1" in seen.form and not first_out.is_set()

    def posts() -> list[str]:
        return [s.form["x_orderid_1"] for s in fake_ccnow.requests if "x_action_1" in s.form]

    fake_ccnow.answer_late = held
    config = load_config(cfg)
    async with writer_unless_held(config) as rt:
        assert rt is not None
        sender = rt.action_sender()
        new = build(config.ccnow[0], "ship", [A, B])
        request = asyncio.ensure_future(sender.take(new))
        try:
            await fake_ccnow.wait_until(lambda: posts() == [A], 30)
            fake_ccnow.release = queue_out
            # The daemon's tick while the request's first post is out: B is queued and due.
            tick = asyncio.ensure_future(sender.send_due())
            second = asyncio.ensure_future(fake_ccnow.wait_until(lambda: len(posts()) > 1, 30))
            # Posted (before) or not (now): the tick ends at once, or its post arrives.
            await asyncio.wait([tick, second], timeout=30, return_when=asyncio.FIRST_COMPLETED)
            second.cancel()
            first_out.set()
            taken = await asyncio.wait_for(request, 30)
        finally:
            first_out.set()
            queue_out.set()
            await asyncio.gather(request, return_exceptions=True)
        states = [(c["order_id"], c["state"], c["outcome"]) for c in taken.to_json()]
        assert states == [(A, "done", "succeeded"), (B, "done", "succeeded")]
        assert (await tick).sent == 0
    assert taken.sent == 2
    assert posts() == [A, B]
    assert [state for _, state, _ in commands(tmp_path)] == ["succeeded", "succeeded"]
