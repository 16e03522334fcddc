"""A write asked for once a stop began is not sent (DESIGN.md invariant 8): a submit answers 503
with no submission recorded and nothing sent to CCV, prices answer 503 with nothing sent, a
CCNow action stays queued for the next start, never posted. The daemon's API over HTTP against
fake providers, once the stop's first step (the writes stop, before the listeners close) ran: a
request whose body the API had taken before the stop may reach its write only then, and a real
SIGTERM cannot be timed into that moment from outside (aiohttp reads no more bytes of any
connection once the stop closes its listener)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import FakeCCNow
from tests.server.test_api import Api, serve_api

A = "396-10-1142"
PRICES = json.loads((Path(__file__).parent / "pricing_example.json").read_text())


@pytest.fixture
async def api(tmp_path: Path, fake_ccnow: FakeCCNow) -> AsyncIterator[tuple[Api, FakeCCVWrites]]:
    fake_ccnow.orders = {A: "pending"}
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, ccnow=fake_ccnow) as api:
        yield api, ccv


async def test_the_apis_writes_after_the_stop_began_are_not_sent(
    api: tuple[Api, FakeCCVWrites], fake_ccnow: FakeCCNow
) -> None:
    served, ccv = api
    served.daemon.writes.stop(5.0)  # the stop's first step; the API still answers

    status, submitted, headers = await served.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-2")
    )
    assert status == 503 and "nothing was recorded or sent" in submitted["error"]
    assert headers["Reconciler-External-Reference"] == "shop-2"
    status, priced, _ = await served.call(
        "PATCH", "/api/v1/ccv/pricing", raw=json.dumps(PRICES, separators=(",", ":")).encode()
    )
    assert status == 503 and "nothing was sent" in priced["error"]
    status, acted, _ = await served.call(
        "POST", "/api/v1/ccnow/actions", body={"order_id": A, "action": "ship"}
    )
    assert status == 202 and acted["state"] == "queued", acted

    assert ccv.submits == [] and ccv.pricing_calls == []
    assert served.rows("SELECT count(*) FROM submissions") == [(0,)]
    assert not [r for r in fake_ccnow.requests if "x_action_1" in r.form]
    assert served.rows("SELECT order_id, action, state FROM commands") == [(A, "ship", "queued")]
