"""What a CCV submit's answer is said to be (probe 35): a submit a notification settled while it
waited for CCV's answer is reported as it is stored (`resolved`), with no `--not-sent` advice; an
order id field in another case (`OrderId`, as a .NET serializer writes it) is read; a body and a
`Location` naming different orders leave a warning; a `--dry-run` says a command on its way is.
Real HTTP against a fake CCV (and a real daemon and command line where those answer)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from reconciler.writes.submit_ids import location_order_id, order_id_from
from reconciler.writes.submit_outcome import (
    NOT_SENT_REFUSED_HEADER,
    OWN_HEADER,
    STATE_HEADER,
    own_from_header,
)
from tests.conftest import call_cli, daemon_here, free_port, write_config
from tests.fake_ccv_writes import SUBMIT_PATH, FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import FakeCCNow, Reply
from tests.server.test_api import Api, api_toml
from tests.writes.test_ccnow_actions import ARGS, A, ccnow, commands, tracked
from tests.writes.test_submit_crash import listening, query
from tests.writes.test_submit_notified_while_waiting import notify

ORDER = "5d0e7c1a-2b3f-4a6d-9e8c-7f1a2b3c4d5e"
OTHER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
SHIP = [*ARGS["ship"], "--key", "S1"]

# --- 1. a submit settled while it waited is said to be settled --------------------------------


async def submit_notified_meanwhile(
    api: Api, fake: FakeCCVWrites, reply: Reply | None
) -> tuple[int, Any, Any]:
    """Submit REF-1, have CCV notify its reference while the submit waits for CCV's answer,
    then answer `reply` (None: no answer within the account's timeout)."""
    fake.submit_hold = asyncio.Event()
    if reply is not None:
        fake.submit_replies = [reply]
    body = submit_body(externalReference="REF-1")
    pending = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=body))
    await fake.wait_until(lambda: len(fake.submits) == 1, 10)
    await api.daemon.hub.check_ccv_reference("default", "REF-1", 0.0)
    if reply is not None:
        fake.submit_hold.set()
    try:
        return await pending
    finally:
        fake.submit_hold.set()


async def test_a_lost_answer_settled_meanwhile_is_said_resolved(
    api: Api, fake: FakeCCVWrites
) -> None:
    status, document, headers = await submit_notified_meanwhile(api, fake, None)
    assert status == 504  # CCV's answer did not come: that much is as before
    assert headers[STATE_HEADER] == "resolved"
    assert document["state"] == "resolved"
    assert "--not-sent" not in document["error"] and "track ccv ID" in document["error"]
    assert "resolved" in own_from_header(headers[NOT_SENT_REFUSED_HEADER])
    assert "within 2 s" in own_from_header(headers[OWN_HEADER])
    _, stored, _ = await api.call("GET", "/api/v1/ccv/submissions/REF-1")
    assert stored["state"] == "resolved"


async def test_ccvs_5xx_settled_meanwhile_is_passed_on_as_resolved(
    api: Api, fake: FakeCCVWrites
) -> None:
    status, _, headers = await submit_notified_meanwhile(
        api, fake, json_reply(503, {"error": "busy"})
    )
    assert (status, headers[STATE_HEADER]) == (503, "resolved")
    assert api.submission("REF-1") == ("resolved", None)


async def test_ccv_submit_through_the_daemon_says_a_submit_settled_meanwhile_is_resolved(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    port, receiver_port = free_port(), free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port, receiver_port=receiver_port))
    fake.submit_hold = asyncio.Event()  # CCV makes the order and never answers in time
    async with daemon_here(cfg):
        await listening(port)
        await listening(receiver_port)
        stdin = json.dumps(submit_body(externalReference="NT-4")).encode()
        run = asyncio.ensure_future(call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin))
        await fake.wait_until(lambda: len(fake.submits) == 1, 20)
        await notify(receiver_port, "NT-4")
        result = await run  # the daemon's CCV timeout (2 s)
        fake.submit_hold.set()
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "CCV has the order, and the submit is resolved" in result.stderr, result.stderr
    assert "NT-4 is uncertain" not in result.stderr and "--not-sent" not in result.stderr
    assert query(tmp_path, "SELECT state FROM submissions") == [("resolved",)]


# --- 2. the order id field, its case ignored --------------------------------------------------


async def test_an_order_id_field_in_another_case_is_read(api: Api, fake: FakeCCVWrites) -> None:
    fake.submit_replies = [json_reply(201, {"OrderId": ORDER})]
    body = submit_body(externalReference="NET-1")
    status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (status, headers[STATE_HEADER], headers["Reconciler-Order-Id"]) == (
        201,
        "succeeded",
        ORDER,
    )
    assert api.submission("NET-1") == ("succeeded", ORDER)


@pytest.mark.parametrize(
    ("answer", "read"),
    [
        ({"ORDERID": ORDER}, ORDER),
        ({"Id": ORDER}, ORDER),
        # Two ids: which one CCV meant is not known, the exact case's no more than another.
        ({"orderId": ORDER, "OrderId": OTHER}, None),
        ({"orderId": ORDER, "ORDERID": OTHER}, None),
        ({"OrderId": ORDER, "ORDERID": OTHER}, None),
        ({"OrderId": ORDER, "ORDERID": OTHER, "id": OTHER}, None),
        ({"OrderId": ORDER, "ORDERID": ORDER}, ORDER),  # the same id twice: one id
        ({"orderId": ORDER, "ORDERID": ORDER}, ORDER),
        # A null names no order: the other case's id is the order's, not `id`'s.
        ({"orderId": None, "OrderId": ORDER, "id": OTHER}, ORDER),
        ({"orderId": None, "id": ORDER}, ORDER),
    ],
)
def test_which_order_id_an_answer_names(answer: dict[str, str | None], read: str | None) -> None:
    assert order_id_from(json.dumps(answer).encode(), ("orderId", "id")) == read


@pytest.mark.parametrize("cases", [("OrderId", "ORDERID"), ("orderId", "ORDERID")])
async def test_two_order_ids_in_other_cases_are_an_id_named_twice(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture, cases: tuple[str, str]
) -> None:
    caplog.set_level(logging.INFO)
    fake.submit_replies = [json_reply(201, {cases[0]: ORDER, cases[1]: OTHER})]
    body = submit_body(externalReference="NET-2")
    status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (status, headers[STATE_HEADER]) == (201, "uncertain")
    assert api.rows("SELECT reason FROM submissions") == [("unusable_order_id",)]
    # The log line names the reason stored, not `no_order_id`.
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ccv.submit_")]
    assert "ccv.submit_unusable_order_id" in said and "ccv.submit_no_order_id" not in said


async def test_a_null_order_id_leaves_the_id_in_another_case(api: Api, fake: FakeCCVWrites) -> None:
    # Not `id`'s order: followed as `succeeded`, it would be another order than CCV made.
    fake.submit_replies = [json_reply(201, {"orderId": None, "OrderId": ORDER, "id": OTHER})]
    body = submit_body(externalReference="NET-3")
    status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (status, headers["Reconciler-Order-Id"]) == (201, ORDER)
    assert api.submission("NET-3") == ("succeeded", ORDER)


# --- 3. a body and a Location naming different orders -----------------------------------------


def located(status: int, document: object, location: str) -> Reply:
    return Reply(status, json.dumps(document), "application/json", {"Location": location})


async def test_a_location_naming_another_order_is_warned_of(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake.submit_replies = [
        located(201, {"orderId": ORDER}, f"{SUBMIT_PATH}/{OTHER}"),
        located(201, {"orderId": OTHER}, f"{SUBMIT_PATH}/{OTHER}"),
    ]
    for ref in ("LOC-1", "LOC-2"):
        status, _, _ = await api.call(
            "POST", "/api/v1/ccv/orders", body=submit_body(externalReference=ref)
        )
        assert status == 201
    # The body's order is taken, as before.
    assert api.submission("LOC-1") == ("succeeded", ORDER)
    lines = [r for r in caplog.records if r.getMessage() == "ccv.submit_location_differs"]
    assert [r.levelno for r in lines] == [logging.WARNING]  # LOC-2's agree: no line
    said = lines[0].fields  # type: ignore[attr-defined]
    assert (said["external_reference"], said["order_id"], said["location_order_id"]) == (
        "LOC-1",
        ORDER,
        OTHER,
    )


@pytest.mark.parametrize(
    ("location", "named"),
    [
        (f"https://ccv.example{SUBMIT_PATH}/{ORDER}", ORDER),
        (f"{SUBMIT_PATH}/{ORDER}/status", ORDER),
        (f"/orders/view?OrderID={ORDER}", ORDER),
        ("/api/ordercompletion/reseller/order", None),
        ("/welcome?page=1", None),
    ],
)
def test_the_order_a_location_names(location: str, named: str | None) -> None:
    assert location_order_id(location, ("orderId", "id")) == named


# --- 4. a dry run names the state of a command on its way -------------------------------------


async def test_a_dry_run_says_a_command_made_before_is_on_its_way(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    # Killed with the command marked sending, before its post.
    crashed = await ccnow(cfg, "ship", A, *SHIP, RECONCILER_FAILPOINT="ccnow.sending")
    assert crashed.code == -9
    assert [s for _, s, _ in commands(tmp_path)] == ["sending"]
    dry = await ccnow(cfg, "ship", A, *SHIP, "--dry-run")
    said = "made before with this key (command 1, sending: on its way, no answer yet)"
    assert said in dry.stderr, dry.stderr
    assert [s for _, s, _ in commands(tmp_path)] == ["sending"]
