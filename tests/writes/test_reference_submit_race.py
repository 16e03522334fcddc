"""A reference carried by two followed orders through a submit: a `track --ref` / `POST /orders`
of another order committed while a submit of the reference is still on its way (CCV then
answers its own order) leaves two carriers, said when the submit's answer is recorded, as a
track says it (`order.reference_carried`, `also_carried_by`); the track itself says a submit of
its reference is under way, or settles an uncertain one and says so. A reference carried only
by orders CCV ended as `Canceled` does not refuse a new submit (nothing was paid), whose answer
names them; any other status of a carrier (`Failed` too) still does, the 409 naming it and its
status. Real SQLite, real HTTP against the daemon's API and a fake CCV on 127.0.0.1, the CLI in
this process."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from reconciler.store import Store, WriterLock
from reconciler.store import submissions as subs
from reconciler.writes.submit_refused import ALSO_CARRIED_HEADER, also_carried_from
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import DROP, FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import Reply
from tests.server.test_api import Api, api_toml, serve_api

O1 = "0b7c2a4e-8f0b-4d57-9a8e-2c1d3b5e7a91"
O2 = "0b7c2a4e-8f0b-4d57-9a8e-2c1d3b5e7a92"


def track(order_id: str, ref: str | None) -> dict[str, object]:
    return {"source": "ccv", "order_id": order_id, "external_reference": ref}


def carried_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "order.reference_carried"
    ]


async def ended_as(api: Api, fake: FakeCCVWrites, order_id: str, status: str) -> None:
    """Have CCV answer `status` for a followed order, and the store take it."""
    fake.orders[order_id] = status
    code, fresh, _ = await api.call("GET", f"/api/v1/orders/ccv/{order_id}?refresh=1")
    assert (code, fresh["status"], fresh["refreshed"]) == (200, status, True), fresh


async def test_a_track_while_the_submit_is_sent_is_said_by_both_answers(
    tmp_path: Path, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler")
    fake.submit_hold = asyncio.Event()
    async with serve_api(tmp_path, fake, ccv_timeout="30s") as api:
        body = submit_body(externalReference="race-1")
        submit = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=body))
        await fake.wait_until(lambda: len(fake.submits) == 1)
        # Committed while CCV has not answered: nothing carries the reference yet.
        status, document, _ = await api.call("POST", "/api/v1/orders", body=track(O1, "race-1"))
        assert status == 201, document
        assert document["submission_state"] == "sending", document
        assert "also_carried_by" not in document
        (said,) = [r for r in caplog.records if r.getMessage() == "order.reference_submit_sending"]
        assert said.levelno == logging.WARNING
        assert (said.fields["order_id"], said.fields["external_reference"]) == (  # type: ignore[attr-defined]
            O1,
            "race-1",
        )
        assert carried_lines(caplog) == []
        fake.submit_hold.set()
        status, answered, headers = await submit
        assert status == 201, answered
        made = answered["orderId"]
        assert made != O1 and headers["Reconciler-Order-Id"] == made
        assert also_carried_from(headers) == [O1]
        assert json.loads(headers[ALSO_CARRIED_HEADER]) == [O1]
        (line,) = carried_lines(caplog)
        assert (line["order_id"], line["external_reference"], line["also_carried_by"]) == (
            made,
            "race-1",
            [O1],
        )
        assert sorted(
            api.rows("SELECT order_id FROM orders WHERE external_reference = 'race-1'")
        ) == sorted([(O1,), (made,)])
        # The read-back of either names the other, as for two tracks.
        status, document, _ = await api.call("POST", "/api/v1/orders", body=track(O1, "race-1"))
        assert (status, document["also_carried_by"]) == (200, [made])
        assert "submission_state" not in document  # succeeded: nothing under way


async def test_a_submit_no_other_order_carries_says_no_carrier(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler")
    body = submit_body(externalReference="alone-1")
    status, document, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert status == 201, document
    assert ALSO_CARRIED_HEADER not in headers
    assert carried_lines(caplog) == []


async def test_a_track_settling_an_uncertain_submit_says_so(api: Api, fake: FakeCCVWrites) -> None:
    fake.submit_replies.append(Reply(DROP, ""))
    body = submit_body(externalReference="lost-1")
    status, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (status, document["state"]) == (502, "uncertain"), document
    status, document, _ = await api.call("POST", "/api/v1/orders", body=track(O1, "lost-1"))
    assert status == 201, document
    assert document["submission_state"] == "resolved", document
    assert api.rows("SELECT state, order_id FROM submissions") == [("resolved", O1)]


async def test_carriers_canceled_leave_the_reference_free_to_submit(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    for order_id in (O1, O2):
        assert (await api.call("POST", "/api/v1/orders", body=track(order_id, "again-1")))[0] == 201
    await ended_as(api, fake, O1, "Canceled")
    await ended_as(api, fake, O2, "canceled")  # CCV's word, whatever its case
    caplog.set_level(logging.INFO, logger="reconciler")
    caplog.clear()  # the track of O2 said O1 carries it
    body = submit_body(externalReference="again-1")
    status, answered, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert status == 201, answered
    assert len(fake.submits) == 1
    assert also_carried_from(headers) == [O1, O2]
    (line,) = carried_lines(caplog)
    assert (line["order_id"], line["also_carried_by"]) == (answered["orderId"], [O1, O2])
    assert api.rows("SELECT state FROM submissions") == [("succeeded",)]


# `Failed` is no end state: a CCV employee may still complete the order (model.py).
@pytest.mark.parametrize("status", ["Completed", "Closed", "Processing", "Failed", "FAILED"])
async def test_a_carrier_in_another_status_still_refuses_it_naming_its_status(
    api: Api, fake: FakeCCVWrites, status: str
) -> None:
    for order_id in (O1, O2):
        assert (await api.call("POST", "/api/v1/orders", body=track(order_id, "kept-1")))[0] == 201
    await ended_as(api, fake, O1, "Canceled")
    await ended_as(api, fake, O2, status)
    body = submit_body(externalReference="kept-1")
    code, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert code == 409, document
    assert (document["order_id"], document["order_status"], document["carried_by"]) == (
        O2,
        status,
        [O2],
    )
    assert fake.submits == []
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]


async def test_a_carrier_never_checked_still_refuses_it(api: Api, fake: FakeCCVWrites) -> None:
    assert (await api.call("POST", "/api/v1/orders", body=track(O1, "unread-1")))[0] == 201
    body = submit_body(externalReference="unread-1")
    code, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert code == 409, document
    assert (document["order_id"], document["order_status"]) == (O1, None)
    assert fake.submits == []


async def test_ccv_submit_after_a_canceled_carrier_prints_the_id_and_names_it(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    tracked = await call_cli("--config", cfg, "track", "ccv", O1, "--ref", "shop-3")
    assert tracked.code == 0, tracked.stderr
    fake.orders[O1] = "Canceled"
    caught = await call_cli("--config", cfg, "catch-up", "--source", "ccv")
    assert caught.code == 0, caught.stderr
    stdin = json.dumps(submit_body(externalReference="shop-3")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 0, result.stderr
    made = result.stdout.strip()
    assert made and made != O1
    warned = [line for line in result.stderr.splitlines() if line.startswith("reconciler: ")]
    assert warned == [
        f"reconciler: warning: reference shop-3 is carried by order {O1} too, which reconciler "
        f"follows: order {made} is tracked with it"
    ], result.stderr
    (line,) = [d for d in result.log_lines() if d.get("message") == "order.reference_carried"]
    assert (line["order_id"], line["also_carried_by"]) == (made, [O1]), line
    assert len(fake.submits) == 1


async def test_ccv_submit_names_the_carrier_and_status_that_refuse_it(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    assert (await call_cli("--config", cfg, "track", "ccv", O1, "--ref", "shop-5")).code == 0
    fake.orders[O1] = "Completed"
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccv")).code == 0
    stdin = json.dumps(submit_body(externalReference="shop-5")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (65, ""), result.stderr
    assert (
        f"reconciler: error: external reference shop-5 is followed already (order {O1}, "
        "Completed, carries it); not sent"
    ) in result.stderr
    assert fake.submits == []


async def test_track_ref_while_another_process_sends_its_submit_warns(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    db = tmp_path / "reconciler.db"
    store = await Store.open(db, sinks=["jsonl"])
    lock = WriterLock(db)
    try:
        # A running `ccv submit` (or daemon) holds the writer lock with its submit `sending`.
        lock.acquire()
        await subs.record(store, "default", "busy-1", time.time())
        result = await call_cli("--config", cfg, "track", "ccv", O1, "--ref", "busy-1")
        assert result.code == 0, result.stderr
        warned = [line for line in result.stderr.splitlines() if line.startswith("reconciler: ")]
        assert warned == [
            "reconciler: warning: a submit of reference busy-1 is being sent (CCV has not "
            f"answered yet): order {O1} is tracked with it; should CCV answer another order, "
            "both carry it"
        ], result.stderr
        logged = [
            d for d in result.log_lines() if d.get("message") == "order.reference_submit_sending"
        ]
        assert [(d["order_id"], d["external_reference"]) for d in logged] == [(O1, "busy-1")]
    finally:
        lock.release()
        await store.close()


async def test_track_ref_settling_an_uncertain_submit_says_so(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    fake.submit_replies.append(json_reply(503, {"error": "Server error"}))
    stdin = json.dumps(submit_body(externalReference="down-1")).encode()
    assert (await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)).code == 75
    result = await call_cli("--config", cfg, "track", "ccv", O1, "--ref", "down-1")
    assert result.code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("reconciler: ")]
    assert warned == [
        f"reconciler: the uncertain submit of reference down-1 is resolved: order {O1} tracked "
        "with it is taken for its order (order.submit_resolved)"
    ], result.stderr
