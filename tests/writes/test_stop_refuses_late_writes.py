"""A write asked for once a stop began is not sent (DESIGN.md invariant 8): a submit answers 503
with no submission recorded and nothing sent to CCV, prices answer 503 with nothing sent, a
CCNow action stays queued for the next start, never posted. The daemon's API over HTTP against
fake providers, once the stop's first step (the writes stop, before the listeners close) ran: a
request whose body the API had taken before the stop may reach its write only then, and a real
SIGTERM cannot be timed into that moment from outside (aiohttp reads no more bytes of any
connection once the stop closes its listener). A write the stop catches waiting for its
account's turn (every turn held by other requests) was not sent either, and answers the same."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from reconciler.config import CCNowConfig, CCVConfig
from reconciler.sources.http import Gates
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


class CountedGate(asyncio.Semaphore):
    """An account's gate that counts the requests that found every turn taken."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.waiting = 0
        self._queued = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        if self.locked():
            self.waiting += 1
            self._queued.set()
        return await super().acquire()

    async def until_waiting(self, n: int) -> None:
        """Return once `n` requests waited for their turn (within a minute: a request through
        the API took more than the 5 s this once allowed on a loaded machine)."""
        while self.waiting < n:
            self._queued.clear()
            await asyncio.wait_for(self._queued.wait(), 60)


class CountedGates(Gates):
    """The process's bounds, each counted."""

    def __init__(self) -> None:
        super().__init__()
        self.counted: dict[tuple[str, str], CountedGate] = {}

    def of(self, account: CCVConfig | CCNowConfig) -> CountedGate:
        key = ("ccv" if isinstance(account, CCVConfig) else "ccnow", account.name)
        if key not in self.counted:
            self.counted[key] = CountedGate(account.concurrency)
        return self.counted[key]


async def test_the_apis_writes_waiting_for_their_turn_when_the_stop_begins_are_not_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every turn of the account is taken (a pass's requests) when a submit and a pricing call
    # come; the stop begins while they wait, then the turns are given back.
    caplog.set_level(logging.INFO, logger="reconciler")
    gates = CountedGates()
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as served:
        account = served.daemon.config.ccv[0]
        gate = gates.of(account)
        for _ in range(account.concurrency):
            await gate.acquire()
        submitting = asyncio.ensure_future(
            served.call("POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-3"))
        )
        prices = json.dumps(PRICES, separators=(",", ":")).encode()
        pricing = asyncio.ensure_future(served.call("PATCH", "/api/v1/ccv/pricing", raw=prices))
        await gate.until_waiting(2)
        served.daemon.writes.stop(5.0)
        for _ in range(account.concurrency):
            gate.release()
        (status, submitted, headers), (priced_status, priced, _) = await asyncio.gather(
            submitting, pricing
        )
        assert status == 503 and "nothing was recorded or sent" in submitted["error"]
        assert headers["Reconciler-External-Reference"] == "shop-3"
        assert priced_status == 503 and "nothing was sent" in priced["error"]
        # Not kept as a submit that failed: the reference is free to be submitted again.
        assert served.rows("SELECT count(*) FROM submissions") == [(0,)]
        status, _, _ = await served.call("GET", "/api/v1/ccv/submissions/shop-3")
        assert status == 404
    assert ccv.submits == [] and ccv.pricing_calls == []
    assert not [r for r in caplog.records if r.getMessage() == "ccv.submit_not_sent"]


@pytest.mark.parametrize("action", ["ship", "adjust"])  # retried posts, and one sent once
async def test_an_action_waiting_for_its_turn_when_the_stop_begins_stays_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    gates = CountedGates()
    async with (
        FakeCCVWrites() as ccv,
        serve_api(tmp_path, ccv, ccnow=fake_ccnow, gates=gates) as served,
    ):
        account = served.daemon.config.ccnow[0]
        gate = gates.of(account)
        for _ in range(account.concurrency):
            await gate.acquire()
        body = {"order_id": A, "action": action}
        if action == "adjust":
            body["amount"] = "7.50"
        acting = asyncio.ensure_future(served.call("POST", "/api/v1/ccnow/actions", body=body))
        await gate.until_waiting(1)
        served.daemon.writes.stop(5.0)
        for _ in range(account.concurrency):
            gate.release()
        status, acted, _ = await acting
        assert status == 202 and acted["state"] == "queued", acted
        # Given back as it was: no attempt counted, not uncertain, due for the next start.
        rows = served.rows("SELECT action, state, attempts FROM commands")
        assert rows == [(action, "queued", 0)]
    assert not [r for r in fake_ccnow.requests if "x_action_1" in r.form]


async def test_a_submit_waiting_for_a_turn_the_stop_outlasts_is_answered_at_once(
    tmp_path: Path,
) -> None:
    # Every turn is held past the stop's bound (writes out with a `timeout` over it): the
    # submit waiting for one was not sent, and is answered so when the stop begins. Waiting on
    # for a turn, it was cut off at the bound and left `sending`: uncertain at the next start,
    # for a person to say CCV never got it, its caller's connection dropped.
    gates = CountedGates()
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as served:
        account = served.daemon.config.ccv[0]
        gate = gates.of(account)
        for _ in range(account.concurrency):
            await gate.acquire()
        submitting = asyncio.ensure_future(
            served.call("POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-4"))
        )
        await gate.until_waiting(1)
        served.daemon.writes.stop(5.0)
        await served.daemon.writes.wait()  # the stop's wait: at once once every write ended
        rows = served.rows("SELECT external_reference, state FROM submissions")
        assert rows == [], "cut off while waiting for its turn"
        status, submitted, _ = await submitting
        assert status == 503 and "nothing was recorded or sent" in submitted["error"]
        # Every turn of the account is there again once the held ones are given back.
        for _ in range(account.concurrency):
            gate.release()
        for _ in range(account.concurrency):
            assert not gate.locked()
            await gate.acquire()
        assert gate.locked()
    assert ccv.submits == []
