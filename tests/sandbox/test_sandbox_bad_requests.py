"""The simulator over real HTTP on 127.0.0.1 refuses a body it cannot keep with a 400, as the
daemon's API does (one nested too deep, one holding half a character), and a client that gives
up on a slow answer is a debug line, not a traceback."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from reconciler.sandbox import CCNOW_PATH, CCV_SUBMIT_PATH
from reconciler.sandbox.ccv_writes import PRICING_PATH
from tests.sandbox.conftest import Serve
from tests.sandbox.test_sandbox import KEY, LOGIN, poll_until

DEEP = b"[" * 100_000 + b"]" * 100_000
SUBMIT = b'{"notifyCustomerByEmail": true, "order": {}, "externalReference": "\\ud800"}'


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", CCV_SUBMIT_PATH),
        ("PATCH", PRICING_PATH),
        ("POST", "/_sandbox/orders/ccv/{order_id}"),
    ],
    ids=["submit", "pricing", "admin"],
)
@pytest.mark.parametrize("body", [DEEP, b'{"status": "\\udc00"}'], ids=["deep", "surrogate"])
async def test_a_body_it_cannot_keep_is_a_400(
    serve: Serve, http: aiohttp.ClientSession, method: str, path: str, body: bytes
) -> None:
    # 100k-deep: a 500 with a traceback (RecursionError, not the ValueError caught). A lone
    # surrogate in a submit's externalReference was kept and broke `/_sandbox/orders`.
    sandbox, base = await serve()
    url = base + path.format(order_id=sandbox.ccv_order_ids()[0])
    if body is not DEEP and path == CCV_SUBMIT_PATH:
        body = SUBMIT
    async with http.request(method, url, data=body, headers=KEY) as resp:
        assert resp.status == 400, await resp.text()
        error = (await resp.json())["error"]
    assert "nests too deep" in error if body is DEEP else "lone surrogate" in error
    async with http.get(base + "/_sandbox/orders") as resp:
        assert resp.status == 200
        listed = json.loads(await resp.read())
    assert len(listed["ccv"]) == 5  # no order made of it


async def test_a_client_that_gives_up_on_a_slow_answer_is_a_debug_line(
    serve: Serve, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # The handler read the form after the client left: aiohttp logged ConnectionResetError's
    # traceback at error level.
    caplog.set_level(logging.DEBUG)
    _, base = await serve(faults="slow:ccnow=0.5")
    with pytest.raises(asyncio.TimeoutError):
        timeout = aiohttp.ClientTimeout(total=0.1)
        async with http.post(base + CCNOW_PATH, data=LOGIN, timeout=timeout):
            pass
    await poll_until(lambda: any(r.getMessage() == "sandbox.client_left" for r in caplog.records))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
