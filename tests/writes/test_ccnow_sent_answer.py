"""A command being sent shows no answer: the words of an earlier attempt (CCNow down for
maintenance) are not the answer of the post now out (README: `sent`, on its way, no answer
yet)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.runtime import Runtime
from reconciler.writes.ccnow_actions import build
from reconciler.writes.ccnow_taken import command_json
from tests.conftest import poll_until, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply

ORDER = "396-10-1142"


async def test_a_command_being_sent_again_shows_no_earlier_answer(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    fake_ccnow.orders = {ORDER: "pending"}
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    async with Runtime(config) as rt:
        await rt.store.orders.track("ccnow", "default", [(ORDER, None)], time.time())
        sender = rt.action_sender()
        fake_ccnow.always = Reply(200, "error_message system down for maintenance\n")
        [queued] = (await sender.take(build(config.ccnow[0], "ship", [ORDER]))).rows
        assert queued.state == "queued" and queued.answer
        # Its next attempt is held at CCNow: while it is out, the command says no answer.
        fake_ccnow.always, fake_ccnow.hold = None, asyncio.Event()
        posts = len(fake_ccnow.requests)
        async with rt.store.transaction():  # its time come
            await rt.store.conn.execute("UPDATE commands SET next_attempt_at = 0")
        again = asyncio.ensure_future(sender.send_due())
        await poll_until(lambda: len(fake_ccnow.requests) > posts, 10, "the post to arrive")
        [out] = await sender.commands([queued.id])
        shown = command_json(out)
        assert (shown["state"], shown["answer"]) == ("sent", None)
        fake_ccnow.hold.set()
        await again
