"""A request that failed after every retry says whether the provider surely ran nothing, and
whether it answered so (turned away: a 429 or 503 to every attempt that got through), in typed
attributes a caller reads instead of the failure's word."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from yarl import URL

from reconciler.config import RetryConfig
from reconciler.sources.http import RequestFailed, request
from tests.conftest import free_port
from tests.fake_providers import FakeCCNow, Reply, cut_off

RETRY = RetryConfig(attempts=1, backoff_s=0.001, max_backoff_s=0.001)


async def failure(url: URL) -> RequestFailed:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(RequestFailed) as failed:
            await request(
                session,
                "POST",
                url,
                headers={},
                data=b"x_clientid=x",
                timeout=aiohttp.ClientTimeout(total=5),
                gate=asyncio.Semaphore(1),
                retry=RETRY,
                max_body=1000,
                log=logging.getLogger("test"),
                complete=lambda reply: reply.framed,
            )
    return failed.value


@pytest.mark.parametrize(
    ("script", "word", "http_status", "reached", "turned_away"),
    [
        ([Reply(503), Reply(429)], "http_429", 429, False, True),
        ([Reply(429), Reply(500)], "http_500", 500, True, False),
        ([Reply(503), cut_off("396-10-1142 pend")], "truncated_answer", None, True, False),
        ([Reply(500), Reply(503)], "http_503", 503, True, False),
    ],
)
async def test_a_failure_says_whether_the_provider_turned_the_request_away(
    fake_ccnow: FakeCCNow,
    script: list[Reply],
    word: str,
    http_status: int | None,
    reached: bool,
    turned_away: bool,
) -> None:
    fake_ccnow.script = list(script)
    failed = await failure(URL(fake_ccnow.url))
    assert len(fake_ccnow.requests) == 2
    assert (failed.word, failed.http_status) == (word, http_status)
    assert (failed.reached, failed.turned_away) == (reached, turned_away)


async def test_a_request_that_never_got_a_connection_reached_nothing_and_was_not_answered() -> None:
    failed = await failure(URL(f"http://127.0.0.1:{free_port()}/ccnow"))
    assert (failed.word, failed.http_status) == ("connection", None)
    assert (failed.reached, failed.turned_away) == (False, False)
