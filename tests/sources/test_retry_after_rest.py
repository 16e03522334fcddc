"""A read turned away (429, 503) with a Retry-After longer than its retries wait is not tried
again within the request: its account rests (sources/rest.py), and every request of it while
it rests is kept back, none sent; a shorter one, or a 500's, is waited for within the request
as before."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from yarl import URL

from reconciler.config import RetryConfig
from reconciler.sources.errors import RestAsked
from reconciler.sources.http import Reply as Answer
from reconciler.sources.http import RequestFailed, request
from reconciler.sources.rest import AccountRest
from tests.conftest import Clock
from tests.fake_providers import FakeCCNow, Reply

# A request's own retries wait 50 ms at most: a Retry-After of 1 s asks longer.
RETRY = RetryConfig(attempts=2, backoff_s=0.001, max_backoff_s=0.05)


async def ask(url: URL, rest: AccountRest | None) -> Answer:
    async with aiohttp.ClientSession() as session:
        return await request(
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
            rest=rest,
        )


@pytest.mark.parametrize("status", [429, 503])
async def test_a_long_retry_after_rests_the_account_and_keeps_its_requests_back(
    fake_ccnow: FakeCCNow, status: int
) -> None:
    fake_ccnow.always = Reply(status, "busy", headers={"Retry-After": "1"})
    clock = Clock()
    rest = AccountRest(clock=clock)
    with pytest.raises(RestAsked) as asked:
        await ask(URL(fake_ccnow.url), rest)
    assert len(fake_ccnow.requests) == 1  # not asked again 50 ms later
    assert asked.value.until == clock.now + 1
    assert rest.take() == clock.now + 1
    assert rest.take() is None  # recorded once
    with pytest.raises(RestAsked):
        await ask(URL(fake_ccnow.url), rest)
    assert len(fake_ccnow.requests) == 1  # kept back: none sent while it rests
    fake_ccnow.always = None
    clock.now += 1
    await ask(URL(fake_ccnow.url), rest)
    assert len(fake_ccnow.requests) == 2


@pytest.mark.parametrize(("status", "retry_after"), [(429, "0"), (500, "1"), (503, None)])
async def test_other_answers_are_retried_within_the_request(
    fake_ccnow: FakeCCNow, status: int, retry_after: str | None
) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    fake_ccnow.always = Reply(status, "busy", headers=headers)
    rest = AccountRest(clock=Clock())
    with pytest.raises(RequestFailed):
        await ask(URL(fake_ccnow.url), rest)
    assert len(fake_ccnow.requests) == 3
    assert rest.take() is None
