"""The wait between a CCNow post's attempts (writes/ccnow_send.post_retrying, through
sources/http.waited_to_retry): a stop cuts it short, after a post turned away and after a lost
answer alike, logged as `request.retry` under the actions' logger; and a `Retry-After` that comes
with an answer whose body broke after it began (a lost answer) holds a ship queued as long as it
asks, as one after a lost answer does. Each answer is sent by a fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from reconciler.config import RetryConfig
from reconciler.writes.ccnow_send import GaveUp, post_retrying
from tests.conftest import poll_until, write_config
from tests.fake_providers import FakeCCNow, Raw, Reply
from tests.writes.test_ccnow_actions import ARGS, A, ccnow, query

BUSY = Reply(503, "busy", headers={"Retry-After": "3600"})


@pytest.mark.parametrize(
    ("first", "reached"),
    [(BUSY, False), (Reply(524, "A timeout occurred"), True)],
    ids=["turned-away", "after-a-lost-answer"],
)
async def test_a_stop_during_a_posts_wait_to_retry_ends_it_at_once(
    fake_ccnow: FakeCCNow, caplog: pytest.LogCaptureFixture, first: Reply, reached: bool
) -> None:
    # A retry within the post may wait an hour here: only the stop ends the wait.
    caplog.set_level(logging.DEBUG, logger="reconciler.writes.ccnow_actions")
    fake_ccnow.script = [first]
    fake_ccnow.always = BUSY
    halt = asyncio.Event()
    retry = RetryConfig(attempts=3, backoff_s=3600.0, max_backoff_s=7200.0)
    async with aiohttp.ClientSession() as session:
        sent = asyncio.ensure_future(
            post_retrying(
                *(session, URL(fake_ccnow.url), {}, b"x_clientid=x"),
                aiohttp.ClientTimeout(total=5),
                asyncio.Semaphore(1),
                halt,
                retry,
            )
        )
        await poll_until(lambda: logged(caplog, "request.retry"), 5, "the wait to retry")
        started = time.monotonic()
        halt.set()
        with pytest.raises(GaveUp) as failed:
            await asyncio.wait_for(sent, 5)
    assert time.monotonic() - started < 2
    assert len(fake_ccnow.requests) == 1
    assert (failed.value.reached, failed.value.http_status) == (reached, first.status)


def logged(caplog: pytest.LogCaptureFixture, message: str) -> bool:
    """Whether a record of the actions' logger says `message`."""
    name = "reconciler.writes.ccnow_actions"
    return any(r.name == name and r.getMessage() == message for r in caplog.records)


async def test_a_retry_after_with_an_answer_cut_short_holds_a_ship_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A 429 whose body broke after it began may have carried the order's line (a lost answer),
    # but its Retry-After came whole: not posted again before it asks, an hour at most.
    fake_ccnow.orders = {A: "pending"}
    head = b"HTTP/1.1 429 Too Many\r\nRetry-After: 600\r\nContent-Length: 200\r\n\r\n"
    fake_ccnow.script = [Raw(raw=head + f"{A} pending\n".encode())]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    before = time.time()
    result = await ccnow(cfg, "ship", A, *ARGS["ship"])
    after = time.time()
    assert result.code == 75, result.stdout + result.stderr
    assert len(fake_ccnow.requests) == 1
    sql = "SELECT state, answer, next_attempt_at, maybe_reached_at FROM commands"
    [(state, answer, at, reached)] = query(tmp_path, sql)
    assert (state, answer) == ("queued", "http_429_cut_short")
    assert before + 600 <= at <= after + 600
    assert reached is not None
