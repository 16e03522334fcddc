"""A write the daemon's stop cuts off at its bound (the provider still silent, its timeout
longer than the stop may wait) answers its caller before the API closes: `503` with
`"error": "stopping"`, the command named (a submit's external reference, the one reconciler made
among them; a CCNow action's id) and its state as recorded (`sending`), with no Retry-After (the
same request again could be a second order). Before, the connection closed with no answer, and a
caller whose reference reconciler made never learnt it. A real API with slow fake providers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import FakeCCNow
from tests.server.test_api import Api, serve_api

A = "396-10-1142"
CUT_AFTER_S = 0.05  # the stop's bound, short: the providers answer long after it


async def stop_cutting(api: Api) -> None:
    """The daemon's stop as far as its writes: no request taken, then the writes out waited
    for until the bound and cut."""
    daemon = api.daemon
    assert daemon.api is not None
    await daemon.api.stop_accepting()
    daemon.writes.stop(CUT_AFTER_S)
    await daemon.writes.wait()


@pytest.fixture
async def held(fake: FakeCCVWrites) -> AsyncIterator[FakeCCVWrites]:
    fake.submit_hold = asyncio.Event()
    try:
        yield fake
    finally:
        fake.submit_hold.set()


async def test_a_submit_cut_by_the_stop_is_answered_with_its_reference(
    tmp_path: Path, held: FakeCCVWrites
) -> None:
    async with serve_api(tmp_path, held, ccv_timeout="60s") as api:
        # No externalReference: reconciler makes one, known to the caller only by its answer.
        pending = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=submit_body()))
        await held.wait_until(lambda: len(held.submits) == 1, 10)
        ref = held.submits[0]["externalReference"]
        await stop_cutting(api)
        status, document, headers = await asyncio.wait_for(pending, 10)
        assert api.submission(ref) == ("sending", None)
    assert status == 503, document
    assert (document["error"], document["external_reference"], document["state"]) == (
        "stopping",
        ref,
        "sending",
    )
    assert "Retry-After" not in headers
    assert headers["Reconciler-External-Reference"] == ref
    assert headers["Reconciler-Submission-State"] == "sending"
    assert len(held.submits) == 1


async def test_an_action_cut_by_the_stop_is_answered_with_its_id(
    tmp_path: Path, fake: FakeCCVWrites, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.delay_s = 3600.0  # ends when the fake closes
    async with serve_api(tmp_path, fake, ccnow=fake_ccnow) as api:
        pending = asyncio.ensure_future(
            api.call("POST", "/api/v1/ccnow/actions", body={"order_id": A, "action": "ship"})
        )
        await fake_ccnow.wait_until(lambda: fake_ccnow.in_flight == 1, 10)
        await stop_cutting(api)
        status, document, headers = await asyncio.wait_for(pending, 10)
    assert status == 503, document
    assert document["error"] == "stopping"
    [command] = document["commands"]
    assert (command["id"], command["order_id"], command["outcome"]) == (1, A, "sending")
    assert (document["id"], document["outcome"]) == (1, "sending")
    # Its post went out (CCNow may have run it): counted sent, as its state `sent` says.
    assert document["sent"] == 1
    assert "Retry-After" not in headers
