"""The provider simulator, driven over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.config import Secret
from reconciler.sandbox import (
    CCNOW_PATH,
    CCV_SUBMIT_PATH,
    Fault,
    Sandbox,
    SandboxOptions,
    parse_faults,
    run_sandbox,
)
from reconciler.server import extract_ccnow_ids
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.errors import SourceUnavailable
from tests.conftest import call_cli
from tests.fake_providers import ccnow_config
from tests.sandbox.conftest import Serve
from tests.sources.test_ccnow import Collector


def basic(user: str, password: str = "") -> dict[str, str]:
    """Authorization header of HTTP Basic (built by hand: aiohttp's helper is deprecated)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


KEY = basic("t_sandbox")
LOGIN = {"x_clientid": "sandbox", "x_password": "sandbox"}

# Written from the provider documents, independently of the simulator's own tables.
CCV_ALLOWED = {
    ("Processing", "Incomplete"),
    ("Processing", "AwaitingPayment"),
    ("Incomplete", "AwaitingPayment"),
    ("Incomplete", "Screening"),
    ("Incomplete", "Canceled"),
    ("AwaitingPayment", "Screening"),
    ("AwaitingPayment", "Canceled"),
    ("AwaitingPayment", "Failed"),
    ("Screening", "New"),
    ("Screening", "Closed"),
    ("New", "FulfillmentInProgress"),
    ("New", "FulfillmentDone"),
    ("New", "ErpInProgress"),
    ("ErpInProgress", "FulfillmentInProgress"),
    ("FulfillmentInProgress", "FulfillmentDone"),
    ("FulfillmentDone", "Completed"),
}
CCV_END = {"Completed", "Closed", "Canceled", "Failed"}
CCNOW_HOLDS = {"paypal_hold", "getman_hold", "vacation_hold", "preorder_hold"}
CCNOW_ALLOWED = (
    {("received", "processing"), ("received", "paypal_hold"), ("paypal_hold", "processing")}
    | {("processing", hold) for hold in CCNOW_HOLDS - {"paypal_hold"}}
    | {(hold, "pending") for hold in CCNOW_HOLDS - {"paypal_hold"}}
    | {("processing", "pending"), ("processing", "declined"), ("processing", "rejected")}
    | {("paypal_hold", "declined"), ("getman_hold", "rejected")}
    | {("pending", "mark_shipped"), ("mark_shipped", "completed")}
    | {("pending", "mark_canceled"), ("mark_canceled", "canceled")}
    | {("completed", "refunded"), ("completed", "chargeback")}
)
CCNOW_END = {"canceled", "declined", "rejected", "chargeback", "test"}
CCNOW_SETTLED = {"completed", "refunded"}


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Receiver:
    """A local notification endpoint that records every call."""

    url: str = ""
    calls: list[tuple[str, bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, count: int) -> None:
        async def _wait() -> None:
            while len(self.calls) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout=5)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def hook(request: web.Request) -> web.Response:
        rec.calls.append((request.method, await request.read()))
        rec.arrived.set()
        # CCV ignores the answer; an error here must not cause a retry.
        return web.Response(status=500)

    app = web.Application()
    app.router.add_route("*", "/hook", hook)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        rec.url = str(server.make_url("/hook"))
        yield rec


async def poll_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def status_url(base: str, order_id: str) -> str:
    return f"{base}/api/ordercompletion/reseller/order/{order_id}/status"


async def ccnow(http: aiohttp.ClientSession, base: str, fields: dict[str, str]) -> str:
    async with http.post(base + CCNOW_PATH, data=fields) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        return await resp.text()


# --- CCV ----------------------------------------------------------------------------------------


async def test_ccv_status_needs_the_key_as_basic_user(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve()
    order_id = sandbox.ccv_order_ids()[0]
    url = status_url(base, order_id)
    for auth in ({}, basic("t_wrong"), basic("t_sandbox", "x"), {"Authorization": "t_sandbox"}):
        async with http.get(url, headers=auth) as resp:
            assert resp.status == 401
    async with http.get(url, headers=KEY) as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert answer["orderStatus"] == sandbox.status("ccv", order_id)
    async with http.get(status_url(base, "no-such-order"), headers=KEY) as resp:
        assert resp.status == 404
        assert "error" in await resp.json()
    assert sandbox.stats.ccv_requests == 6


async def test_ccv_external_reference_only_when_set(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve()
    with_ref = sandbox.create_ccv_order("ref-000123", None, None)
    without = sandbox.create_ccv_order(None, None, None)
    async with http.get(status_url(base, with_ref), headers=KEY) as resp:
        assert await resp.json() == {"orderStatus": "Processing", "externalReference": "ref-000123"}
    async with http.get(status_url(base, without), headers=KEY) as resp:
        assert await resp.json() == {"orderStatus": "Processing"}


async def test_ccv_submit_creates_an_order(serve: Serve, http: aiohttp.ClientSession) -> None:
    sandbox, base = await serve()
    body = {
        "notifyCustomerByEmail": True,
        "externalReference": "123456",
        "statusNotificationInformation": {
            "notificationUrl": "https://api.integrator.nl/orderstatusCCV/",
            "notifyOnStatus": ["Completed", "Closed", "Canceled", "Failed"],
        },
        "order": {},
    }
    async with http.post(base + CCV_SUBMIT_PATH, json=body) as resp:
        assert resp.status == 401
    async with http.post(base + CCV_SUBMIT_PATH, json=body, headers=KEY) as resp:
        assert resp.status == 201
        order_id = (await resp.json())["orderId"]
    assert order_id in sandbox.ccv_order_ids()
    async with http.get(status_url(base, order_id), headers=KEY) as resp:
        assert await resp.json() == {"orderStatus": "Processing", "externalReference": "123456"}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b"{}",
        b'{"notifyCustomerByEmail": true}',
        b'{"notifyCustomerByEmail": true, "order": []}',
        b'{"order": {}}',
        b'{"order": {}, "notifyCustomerByEmail": "yes"}',
        b'{"order": {}, "notifyCustomerByEmail": null}',
        b'{"order": {}, "notifyCustomerByEmail": false, "externalReference": 5}',
        b'{"order": {}, "notifyCustomerByEmail": false,'
        b' "statusNotificationInformation": {"notificationUrl": "ftp://x/y"}}',
        b'{"order": {}, "notifyCustomerByEmail": false,'
        b' "statusNotificationInformation": {"notificationUrl": "http://example.com/"}}',
        b'{"order": {}, "notifyCustomerByEmail": false,'
        b' "statusNotificationInformation": {"notificationUrl": "https://x:99999/"}}',
        b'{"order": {}, "notifyCustomerByEmail": false,'
        b' "statusNotificationInformation": {"notifyOnStatus": ["Shipped"]}}',
        b'{"order": {}, "notifyCustomerByEmail": false,'
        b' "statusNotificationInformation": {"notifyOnStatus": "Completed"}}',
    ],
)
async def test_ccv_submit_rejects_bad_input_with_400(
    serve: Serve, http: aiohttp.ClientSession, body: bytes
) -> None:
    sandbox, base = await serve()
    headers = {"Content-Type": "application/json", **KEY}
    async with http.post(base + CCV_SUBMIT_PATH, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]
    assert len(sandbox.ccv_order_ids()) == 5


async def test_ccv_submit_accepts_http_only_for_loopback(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    _, base = await serve()
    for url in ("http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]/hook"):
        body = {
            "notifyCustomerByEmail": False,
            "order": {},
            "statusNotificationInformation": {"notificationUrl": url},
        }
        async with http.post(base + CCV_SUBMIT_PATH, json=body, headers=KEY) as resp:
            assert resp.status == 201, url


# --- CCNow --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"x_clientid": "sandbox", "x_password": "guess-me-not"},
        {"x_clientid": "someone", "x_password": "sandbox"},
        {},
    ],
)
async def test_ccnow_wrong_login_is_an_error_line(
    serve: Serve, http: aiohttp.ClientSession, fields: dict[str, str]
) -> None:
    _, base = await serve()
    answer = await ccnow(http, base, {**fields, "x_orderid_1": "396101142", "x_action_1": "query"})
    assert answer == "error_message invalid login\n"
    assert "guess-me-not" not in answer


async def test_ccnow_undecodable_form_is_a_400(serve: Serve, http: aiohttp.ClientSession) -> None:
    _, base = await serve()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(base + CCNOW_PATH, data=b"x_clientid=\xff", headers=headers) as resp:
        assert resp.status == 400
        assert await resp.text() == "error_message bad request\n"


async def test_ccnow_pending_list_and_no_pending_orders(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(orders=8)
    ids = sandbox.ccnow_order_ids()
    for index, order_id in enumerate(ids):
        sandbox.set_status("ccnow", order_id, "pending" if index % 3 == 0 else "processing")
    answer = await ccnow(http, base, LOGIN)
    assert answer == "".join(f"{order_id} pending\n" for order_id in ids[::3])
    for order_id in ids[::3]:
        sandbox.set_status("ccnow", order_id, "mark_shipped")
    assert await ccnow(http, base, LOGIN) == "message no_pending_orders\n"
    assert sandbox.stats.ccnow_requests == 2


async def test_ccnow_batch_query_accepts_unhyphenated_ids(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(orders=3)
    a, b, c = sandbox.ccnow_order_ids()
    fields = {
        **LOGIN,
        # posted out of order: the answer follows N
        "x_orderid_3": c.replace("-", ""),
        "x_action_3": "query",
        "x_orderid_1": a.replace("-", ""),
        "x_action_1": "query",
        "x_orderid_2": b,
        "x_action_2": "query",
        "x_orderid_10": "123456789" if "123-45-6789" not in (a, b, c) else "987654321",
        "x_action_10": "query",
        "x_orderid_11": "12-34",
        "x_action_11": "query",
    }
    answer = await ccnow(http, base, fields)
    unknown = "123-45-6789" if "123-45-6789" not in (a, b, c) else "987-65-4321"
    assert answer.split("\n") == [
        f"{a} {sandbox.status('ccnow', a)}",
        f"{b} {sandbox.status('ccnow', b)}",
        f"{c} {sandbox.status('ccnow', c)}",
        f"{unknown} error_message unknown order",
        "12-34 error_message invalid order id",
        "",
    ]
    assert sandbox.stats.ccnow_max_batch == 5
    await ccnow(http, base, {**LOGIN, "x_orderid_1": a, "x_action_1": "query"})
    assert sandbox.stats.ccnow_max_batch == 5


async def test_ccnow_actions(serve: Serve, http: aiohttp.ClientSession) -> None:
    sandbox, base = await serve(orders=2)
    a, b = sandbox.ccnow_order_ids()
    sandbox.set_status("ccnow", a, "pending")
    sandbox.set_status("ccnow", b, "processing")

    async def act(order_id: str, action: str, **more: str) -> str:
        fields = {**LOGIN, "x_orderid_1": order_id, "x_action_1": action}
        fields.update({f"{name}_1": value for name, value in more.items()})
        return (await ccnow(http, base, fields)).rstrip("\n")

    # track and adjust need their fields, and change no status
    assert await act(a, "track") == (
        f"{a} error_message track needs x_trackname_1 and x_tracknumber_1"
    )
    assert await act(a, "track", x_trackname="DHL") == (
        f"{a} error_message track needs x_trackname_1 and x_tracknumber_1"
    )
    assert await act(a, "track", x_trackname="DHL", x_tracknumber="JD01") == f"{a} pending"
    assert await act(a, "adjust") == f"{a} error_message adjust needs x_amount_1 (USD above 0)"
    assert await act(a, "adjust", x_amount="0") == (
        f"{a} error_message adjust needs x_amount_1 (USD above 0)"
    )
    assert await act(a, "adjust", x_amount="2.5") == f"{a} pending"
    assert await act(b, "adjust", x_amount="2.5") == f"{b} error_message order not pending"
    assert await act(b, "track", x_trackname="DHL", x_tracknumber="1") == (
        f"{b} error_message order not pending"
    )
    assert await act(a, "ship") == f"{a} mark_shipped"
    assert sandbox.status("ccnow", a) == "mark_shipped"
    assert await act(a, "ship") == f"{a} error_message order not pending"
    assert await act(a, "cancel") == f"{a} error_message order not pending"
    assert await act(b, "ship") == f"{b} error_message order not pending"
    assert await act(b, "explode") == f"{b} error_message invalid action"
    assert sandbox.status("ccnow", b) == "processing"


@pytest.mark.parametrize(
    "status", ["processing", "received", "getman_hold", "mark_shipped", "test"]
)
async def test_ccnow_cancel_only_from_pending(
    serve: Serve, http: aiohttp.ClientSession, status: str
) -> None:
    sandbox, base = await serve(orders=1)
    (order_id,) = sandbox.ccnow_order_ids()
    sandbox.set_status("ccnow", order_id, status)
    fields = {**LOGIN, "x_orderid_1": order_id, "x_action_1": "cancel"}
    assert await ccnow(http, base, fields) == f"{order_id} error_message order not pending\n"
    assert sandbox.status("ccnow", order_id) == status


async def test_ccnow_queued_actions_end_in_canceled_and_completed(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    sandbox = Sandbox(SandboxOptions(orders=2, seed=3), now=clock)
    base = await sandbox.start("127.0.0.1", 0)
    try:
        to_cancel, to_ship = sandbox.ccnow_order_ids()
        sandbox.set_status("ccnow", to_cancel, "pending")
        sandbox.set_status("ccnow", to_ship, "pending")
        fields = {
            **LOGIN,
            "x_orderid_1": to_cancel,
            "x_action_1": "cancel",
            "x_orderid_2": to_ship,
            "x_action_2": "ship",
        }
        answer = await ccnow(http, base, fields)
        assert answer == f"{to_cancel} mark_canceled\n{to_ship} mark_shipped\n"
        clock.t += 10_000
        sandbox.advance()
    finally:
        await sandbox.stop()
    history = sandbox.stats.history["ccnow"]
    assert [status for _, status in history[to_cancel]][-2:] == ["mark_canceled", "canceled"]
    shipped = [status for _, status in history[to_ship]]
    # completed may move on to refunded or chargeback within the same jump
    assert shipped[shipped.index("mark_shipped") + 1] == "completed"


async def test_ccnow_a_discounted_order_is_refunded_once_completed(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    sandbox = Sandbox(SandboxOptions(orders=12, seed=5), now=clock)
    base = await sandbox.start("127.0.0.1", 0)
    try:
        ids = sandbox.ccnow_order_ids()
        fields = dict(LOGIN)
        for n, order_id in enumerate(ids, 1):
            sandbox.set_status("ccnow", order_id, "pending")
            fields |= {f"x_orderid_{n}": order_id, f"x_action_{n}": "adjust", f"x_amount_{n}": "5"}
        assert (await ccnow(http, base, fields)).count(" pending\n") == len(ids)
        fields = dict(LOGIN)
        for n, order_id in enumerate(ids, 1):
            fields |= {f"x_orderid_{n}": order_id, f"x_action_{n}": "ship"}
        await ccnow(http, base, fields)
        for _ in range(20):
            clock.t += 10_000
            sandbox.advance()
    finally:
        await sandbox.stop()
    ends = [sandbox.status("ccnow", order_id) for order_id in ids]
    # Without a discount, a completed order stays completed 85 % of the time.
    assert ends.count("refunded") >= len(ids) * 2 // 3, ends


async def test_ccnow_drop_fault_applies_the_action_and_answers_nothing(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(orders=1, faults="drop=1")
    (order_id,) = sandbox.ccnow_order_ids()
    sandbox.set_status("ccnow", order_id, "pending")
    fields = {**LOGIN, "x_orderid_1": order_id, "x_action_1": "ship"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await ccnow(http, base, fields)
    assert sandbox.status("ccnow", order_id) == "mark_shipped"
    # Queries are answered: the fault is about actions whose answer is lost.
    fields["x_action_1"] = "query"
    assert await ccnow(http, base, fields) == f"{order_id} mark_shipped\n"


# --- faults -------------------------------------------------------------------------------------


async def fetch_both(http: aiohttp.ClientSession, base: str, order_id: str) -> list[Any]:
    """Return (status, content type, body) of one CCV and one CCNow request."""
    answers: list[Any] = []
    async with http.get(status_url(base, order_id), headers=KEY) as resp:
        answers.append((resp.status, resp.content_type, await resp.text()))
    async with http.post(base + CCNOW_PATH, data=LOGIN) as resp:
        answers.append((resp.status, resp.content_type, await resp.text()))
    return answers


@pytest.mark.parametrize(
    ("spec", "ccv_status", "ccnow_answer"),
    [
        ("maintenance", 503, "error_message system down for maintenance\n"),
        ("http500=1", 500, None),
        ("html=1.0", 200, None),
        ("maintenance:ccnow", 200, "error_message system down for maintenance\n"),
        ("http500:ccv=1", 500, "message no_pending_orders\n"),
    ],
)
async def test_faults(
    serve: Serve,
    http: aiohttp.ClientSession,
    spec: str,
    ccv_status: int,
    ccnow_answer: str | None,
) -> None:
    sandbox, base = await serve(faults=spec, orders=1)
    sandbox.set_status("ccnow", sandbox.ccnow_order_ids()[0], "processing")
    (ccv_code, ccv_type, ccv_text), (ccnow_code, ccnow_type, ccnow_text) = await fetch_both(
        http, base, sandbox.ccv_order_ids()[0]
    )
    assert ccv_code == ccv_status
    if spec.startswith("html"):
        assert ccv_type == ccnow_type == "text/html"
        assert ccv_text.startswith("<!DOCTYPE html>")
        assert ccnow_code == 200
    elif spec.startswith("http500="):
        assert ccnow_code == 500
    else:
        assert (ccnow_code, ccnow_type, ccnow_text) == (200, "text/plain", ccnow_answer)


async def test_fault_share_is_roughly_kept(serve: Serve, http: aiohttp.ClientSession) -> None:
    sandbox, base = await serve(faults="http500:ccv=0.3", orders=1)
    url = status_url(base, sandbox.ccv_order_ids()[0])
    codes = []
    for _ in range(300):
        async with http.get(url, headers=KEY) as resp:
            codes.append(resp.status)
    assert set(codes) == {200, 500}
    assert 50 < codes.count(500) < 130


async def test_slow_fault_delays_answers(serve: Serve, http: aiohttp.ClientSession) -> None:
    sandbox, base = await serve(faults="slow=0.3", orders=1)
    started = time.monotonic()
    answers = await fetch_both(http, base, sandbox.ccv_order_ids()[0])
    assert time.monotonic() - started >= 0.6
    assert answers[0][0] == 200


async def test_faults_change_at_runtime(serve: Serve, http: aiohttp.ClientSession) -> None:
    sandbox, base = await serve(orders=1)
    order_id = sandbox.ccv_order_ids()[0]
    async with http.post(base + "/_sandbox/faults", data="maintenance:ccv") as resp:
        assert resp.status == 200
    assert (await fetch_both(http, base, order_id))[0][0] == 503
    async with http.post(base + "/_sandbox/faults", data="bogus=1") as resp:
        assert resp.status == 400
        assert "bogus" in (await resp.json())["error"]
    assert (await fetch_both(http, base, order_id))[0][0] == 503
    async with http.post(base + "/_sandbox/faults", data="") as resp:
        assert resp.status == 200
    assert (await fetch_both(http, base, order_id))[0][0] == 200


@pytest.mark.parametrize(
    ("spec", "status", "content_type", "words"),
    [
        ("http400=1", 400, "application/json", "missing/invalid"),
        ("http403:ccv=1", 403, "application/json", "forbidden"),
        ("http429=1", 429, "application/json", "too many requests"),
        ("html404:ccv=1", 404, "text/html", "<h1>404 Not Found</h1>"),
    ],
)
async def test_ccv_error_faults(
    serve: Serve,
    http: aiohttp.ClientSession,
    spec: str,
    status: int,
    content_type: str,
    words: str,
) -> None:
    sandbox, base = await serve(faults=spec, orders=1)
    (ccnow_id,) = sandbox.ccnow_order_ids()
    sandbox.set_status("ccnow", ccnow_id, "pending")
    body = {"notifyCustomerByEmail": False, "order": {}}
    for request in (
        http.get(status_url(base, sandbox.ccv_order_ids()[0]), headers=KEY),
        http.post(base + CCV_SUBMIT_PATH, json=body, headers=KEY),
    ):
        async with request as resp:
            assert (resp.status, resp.content_type) == (status, content_type)
            assert words in await resp.text()
            assert resp.headers.get("Retry-After") == ("1" if status == 429 else None)
    assert len(sandbox.ccv_order_ids()) == 1
    # CCV's faults leave CCNow alone
    assert await ccnow(http, base, LOGIN) == f"{ccnow_id} pending\n"


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        ("crlf=1", "{a} pending\r\n{b} pending\r\n"),
        ("cr:ccnow=1", "{a} pending\r{b} pending\r"),
        ("duplicate=1", "{a} pending\n{a} pending\n{b} pending\n{b} pending\n"),
        ("unknown_message:ccnow=1", "message account_locked\n"),
        ("crlf=1,duplicate=1", "{a} pending\r\n{a} pending\r\n{b} pending\r\n{b} pending\r\n"),
    ],
)
async def test_ccnow_answer_shapes(
    serve: Serve, http: aiohttp.ClientSession, spec: str, shape: str
) -> None:
    sandbox, base = await serve(faults=spec, orders=2)
    a, b = sandbox.ccnow_order_ids()
    for order_id in (a, b):
        sandbox.set_status("ccnow", order_id, "pending")
    async with http.post(base + CCNOW_PATH, data=LOGIN) as resp:
        assert (resp.status, resp.content_type) == (200, "text/plain")
        assert await resp.read() == shape.format(a=a, b=b).encode()
    # the shapes are CCNow's: CCV answers as ever
    async with http.get(status_url(base, sandbox.ccv_order_ids()[0]), headers=KEY) as resp:
        assert resp.status == 200
        assert "orderStatus" in await resp.json()


async def test_ccnow_partial_answer_is_cut_mid_line_and_the_connection_closed(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(faults="partial=1", orders=2)
    a, b = sandbox.ccnow_order_ids()
    for order_id in (a, b):
        sandbox.set_status("ccnow", order_id, "pending")
    async with http.post(base + CCNOW_PATH, data=LOGIN) as resp:
        assert resp.status == 200
        # No length and no chunking: only the closed connection ends the answer, so nothing
        # at the HTTP level tells the client that it is incomplete.
        assert "Content-Length" not in resp.headers
        assert "Transfer-Encoding" not in resp.headers
        assert resp.headers["Connection"] == "close"
        body = await resp.read()
    assert body == f"{a} pending\n{b} pe".encode()
    # a one-line answer too; the closed connection is no trouble for the next request
    query = {**LOGIN, "x_orderid_1": a, "x_action_1": "query"}
    async with http.post(base + CCNOW_PATH, data=query) as resp:
        assert await resp.read() == f"{a} pe".encode()


async def test_ccnow_partial_answer_is_a_failure_the_client_retries(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(faults="partial=1", orders=1)
    [order] = sandbox.ccnow_order_ids()
    cfg = ccnow_config(base + CCNOW_PATH, client_id="sandbox", password=Secret("sandbox"))
    emit = Collector()
    with pytest.raises(SourceUnavailable, match=r"^truncated answer$"):
        await CCNowClient(cfg, http).query([order], emit)
    assert emit.seen == []


async def test_sandbox_command_documents_and_checks_the_fault_grammar() -> None:
    shown = await call_cli("sandbox", "--help")
    assert shown.code == 0
    help_text = " ".join(shown.stdout.split())
    for kind in ("http400", "http403", "http429", "html404", "crlf", "cr ", "partial", "duplicate"):
        assert kind in help_text
    assert "unknown_message (message account_locked)" in help_text
    assert "drop (close the connection unanswered after applying a post's actions)" in help_text
    refused = await call_cli("sandbox", "--listen", "127.0.0.1:0", "--faults", "http403:ccnow=1")
    assert refused.code == 2
    assert "http403 is a ccv fault only" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_parse_faults() -> None:
    assert parse_faults("") == ()
    assert parse_faults(" http500:ccv=0.5, maintenance:ccnow ,slow=1.5,html=0.1") == (
        Fault("http500", "ccv", 0.5),
        Fault("maintenance", "ccnow", 1.0),
        Fault("slow", None, 1.5),
        Fault("html", None, 0.1),
    )
    # a kind of one provider only is that provider's, named or not
    assert parse_faults("http403=0.1,html404:ccv=1,crlf=1,unknown_message:ccnow=0.5") == (
        Fault("http403", "ccv", 0.1),
        Fault("html404", "ccv", 1.0),
        Fault("crlf", "ccnow", 1.0),
        Fault("unknown_message", "ccnow", 0.5),
    )


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("bogus", "unknown kind"),
        ("http500", "needs a value"),
        ("http500=1.5", "share from 0 to 1"),
        ("html=-0.1", "share from 0 to 1"),
        ("slow=-1", "seconds"),
        ("slow=nan", "seconds"),
        ("http500=abc", "not a number"),
        ("maintenance=1", "no value"),
        ("http500:paypal=0.1", "unknown provider"),
        ("maintenance:", "unknown provider"),
        ("http500=0.1,http500=0.2", "twice"),
        ("http403:ccnow=1", "ccv fault only"),
        ("partial:ccv=1", "ccnow fault only"),
        ("crlf", "needs a value"),
        ("http429=2", "share from 0 to 1"),
        ("http403=0.1,http403:ccv=0.2", "twice"),
    ],
)
def test_parse_faults_rejects_bad_specs(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_faults(spec)
    with pytest.raises(ValueError, match=words):
        SandboxOptions(faults=spec)


# --- lifecycle ----------------------------------------------------------------------------------


def check_walks(sandbox: Sandbox) -> None:
    for source, allowed in (("ccv", CCV_ALLOWED), ("ccnow", CCNOW_ALLOWED)):
        for order_id, history in sandbox.stats.history[source].items():
            statuses = [status for _, status in history]
            times = [t for t, _ in history]
            assert times == sorted(times), order_id
            for step in itertools.pairwise(statuses):
                assert step in allowed, (source, order_id, statuses)


async def test_lifecycle_reaches_end_states_only_through_allowed_steps() -> None:
    clock = FakeClock()
    sandbox = Sandbox(SandboxOptions(orders=60, seed=7), now=clock)
    initial_ccv = {sandbox.status("ccv", i) for i in sandbox.ccv_order_ids()}
    initial_ccnow = [sandbox.status("ccnow", i) for i in sandbox.ccnow_order_ids()]
    assert len(initial_ccv) >= 6 and initial_ccv & CCV_END
    assert initial_ccnow.count("pending") >= 10
    assert "test" in initial_ccnow
    moved = 0
    for _ in range(600):
        clock.t += 1.0
        moved += sandbox.advance()
    assert moved == sandbox.stats.transitions > 100
    check_walks(sandbox)
    through_erp = [
        oid
        for oid, history in sandbox.stats.history["ccv"].items()
        if "ErpInProgress" in [status for _, status in history[1:]]
    ]
    assert len(through_erp) >= 2
    final_ccv = {sandbox.status("ccv", i) for i in sandbox.ccv_order_ids()}
    final_ccnow = {sandbox.status("ccnow", i) for i in sandbox.ccnow_order_ids()}
    assert final_ccv <= CCV_END and len(final_ccv) >= 3
    assert final_ccnow <= CCNOW_END | CCNOW_SETTLED
    # nothing moves any more
    clock.t += 10_000
    assert sandbox.advance() == 0
    await sandbox.stop()


async def test_erp_in_progress_and_test_orders_are_served(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(orders=60, seed=7)
    erp = [i for i in sandbox.ccv_order_ids() if sandbox.status("ccv", i) == "ErpInProgress"]
    tests = [i for i in sandbox.ccnow_order_ids() if sandbox.status("ccnow", i) == "test"]
    assert erp and tests
    async with http.get(status_url(base, erp[0]), headers=KEY) as resp:
        assert (await resp.json())["orderStatus"] == "ErpInProgress"
    query = {**LOGIN, "x_orderid_1": tests[0], "x_action_1": "query"}
    assert await ccnow(http, base, query) == f"{tests[0]} test\n"
    # a test order is not pending: it is neither listed nor shipped
    assert tests[0] not in await ccnow(http, base, LOGIN)
    ship = {**LOGIN, "x_orderid_1": tests[0], "x_action_1": "ship"}
    assert await ccnow(http, base, ship) == f"{tests[0]} error_message order not pending\n"


async def test_orders_stay_put_without_advance() -> None:
    clock = FakeClock()
    sandbox = Sandbox(SandboxOptions(orders=10, advance=False), now=clock)
    before = {i: sandbox.status("ccv", i) for i in sandbox.ccv_order_ids()}
    clock.t += 10_000
    assert sandbox.advance() == 0
    assert {i: sandbox.status("ccv", i) for i in sandbox.ccv_order_ids()} == before


async def test_served_lifecycle_advances_in_real_time(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(advance=True, speed=40.0, orders=5)
    created = sandbox.create_ccv_order(None, None, None)
    await poll_until(lambda: sandbox.status("ccv", created) != "Processing")
    async with http.get(status_url(base, created), headers=KEY) as resp:
        assert (await resp.json())["orderStatus"] == sandbox.status("ccv", created)
    async with http.get(base + "/_sandbox/stats") as resp:
        assert (await resp.json())["transitions"] >= 1
    check_walks(sandbox)


# --- notifications ------------------------------------------------------------------------------


async def test_notification_arrives_once_with_an_empty_body(
    serve: Serve, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    sandbox, base = await serve(drop_notifications=0.0)
    body = {
        "notifyCustomerByEmail": True,
        "order": {},
        "statusNotificationInformation": {"notificationUrl": receiver.url},
    }
    async with http.post(base + CCV_SUBMIT_PATH, json=body, headers=KEY) as resp:
        order_id = (await resp.json())["orderId"]
    async with http.post(
        f"{base}/_sandbox/orders/ccv/{order_id}", json={"status": "Incomplete"}
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "Incomplete"
    await receiver.wait(1)
    await sandbox.stop()  # lets notifications in flight finish: a retry would show now
    assert receiver.calls == [("POST", b"")]
    assert sandbox.stats.notifications_sent == 1
    assert sandbox.stats.notifications_dropped == 0


async def test_notification_only_for_subscribed_statuses(serve: Serve, receiver: Receiver) -> None:
    sandbox, _ = await serve(drop_notifications=0.0)
    order_id = sandbox.create_ccv_order(None, receiver.url, ["Completed", "Failed"])
    sandbox.set_status("ccv", order_id, "Screening")
    sandbox.set_status("ccv", order_id, "Completed")
    await receiver.wait(1)
    await sandbox.stop()
    assert receiver.calls == [("POST", b"")]
    assert sandbox.stats.notifications_sent == 1
    assert sandbox.stats.transitions == 2


async def test_dropped_notifications_are_counted_not_made(serve: Serve, receiver: Receiver) -> None:
    sandbox, _ = await serve(drop_notifications=1.0)
    order_id = sandbox.create_ccv_order(None, receiver.url, None)
    for status in ("Incomplete", "AwaitingPayment", "Failed"):
        sandbox.set_status("ccv", order_id, status)
    await sandbox.stop()
    assert receiver.calls == []
    assert sandbox.stats.notifications_dropped == 3
    assert sandbox.stats.notifications_sent == 0
    assert [(oid, s) for _, oid, s in sandbox.stats.dropped] == [
        (order_id, "Incomplete"),
        (order_id, "AwaitingPayment"),
        (order_id, "Failed"),
    ]


async def test_unreachable_notification_url_is_ignored(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler.sandbox")
    sandbox, _ = await serve(drop_notifications=0.0)
    # a port that was just free: the call fails, and nothing else happens
    probe = Sandbox(SandboxOptions(orders=0, advance=False))
    free = await probe.start("127.0.0.1", 0)
    await probe.stop()
    order_id = sandbox.create_ccv_order(None, f"{free}/hook", None)
    sandbox.set_status("ccv", order_id, "Incomplete")
    await sandbox.stop()
    assert sandbox.stats.notifications_sent == 1
    assert sandbox.status("ccv", order_id) == "Incomplete"
    failed = [r for r in caplog.records if r.getMessage() == "sandbox.notification_failed"]
    assert len(failed) == 1
    assert failed[0].exc_info is None  # an expected failure: one line, no traceback


async def test_ccnow_status_changes_post_an_order_alert(
    serve: Serve, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    sandbox, base = await serve(orders=2, ccnow_notification_url=receiver.url)
    a, b = sandbox.ccnow_order_ids()
    sandbox.set_status("ccnow", a, "pending")
    sandbox.set_status("ccnow", b, "pending")
    sent = sandbox.stats.ccnow_notifications_sent
    assert sent == sandbox.stats.transitions  # one alert per change so far
    fields = {**LOGIN, "x_orderid_1": b, "x_action_1": "cancel"}
    assert await ccnow(http, base, fields) == f"{b} mark_canceled\n"
    sandbox.set_status("ccv", sandbox.ccv_order_ids()[0], "Failed")  # no CCNow alert
    await receiver.wait(sent + 1)
    await sandbox.stop()
    assert sandbox.stats.ccnow_notifications_sent == sent + 1 == len(receiver.calls)
    method, body = receiver.calls[-1]
    assert method == "POST"
    # what reconciler's receiver takes from a CCNow notification
    assert extract_ccnow_ids(body) == [b]
    assert parse_qs(body.decode()) == {"x_orderid_1": [b], "x_status_1": ["mark_canceled"]}
    assert all(extract_ccnow_ids(call[1]) for call in receiver.calls)


async def test_ccnow_order_alerts_can_be_switched_on_and_off(receiver: Receiver) -> None:
    sandbox = Sandbox(SandboxOptions(orders=1, advance=False))
    (order_id,) = sandbox.ccnow_order_ids()
    sandbox.set_ccnow_notification(receiver.url)
    sandbox.set_status("ccnow", order_id, "test")
    await receiver.wait(1)
    sandbox.set_ccnow_notification(None)
    sandbox.set_status("ccnow", order_id, "refunded")
    await sandbox.stop()
    assert [extract_ccnow_ids(body) for _, body in receiver.calls] == [[order_id]]
    with pytest.raises(ValueError, match="https"):
        sandbox.set_ccnow_notification("http://example.com/notify/ccnow/default/token")


async def test_sandbox_command_refuses_an_alert_url_ccnow_would_not_call() -> None:
    refused = await call_cli(
        "sandbox", "--listen", "127.0.0.1:0", "--ccnow-notification-url", "http://example.com/x"
    )
    assert refused.code == 2
    assert "must be https" in refused.stderr
    assert "Traceback" not in refused.stderr


# --- determinism --------------------------------------------------------------------------------


def snapshot(sandbox: Sandbox) -> dict[str, Any]:
    return sandbox.stats.to_json()["history"]  # type: ignore[no-any-return]


async def test_same_seed_same_world() -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    a = Sandbox(SandboxOptions(orders=30, seed=42), now=clock_a)
    b = Sandbox(SandboxOptions(orders=30, seed=42), now=clock_b)
    other = Sandbox(SandboxOptions(orders=30, seed=43))
    assert a.ccv_order_ids() == b.ccv_order_ids()
    assert a.ccnow_order_ids() == b.ccnow_order_ids()
    assert set(a.ccv_order_ids()).isdisjoint(other.ccv_order_ids())
    assert snapshot(a) == snapshot(b)
    # fine ticks and one big jump give the same walks
    for _ in range(200):
        clock_a.t += 0.5
        a.advance()
    clock_b.t += 100
    b.advance()
    assert a.stats.transitions > 50
    assert snapshot(a) == snapshot(b)


def test_ids_have_the_provider_shapes() -> None:
    sandbox = Sandbox(SandboxOptions(orders=50))
    for order_id in sandbox.ccv_order_ids():
        assert len(order_id) == 36 and order_id[14] == "4"
    for order_id in sandbox.ccnow_order_ids():
        digits = order_id.split("-")
        assert [len(part) for part in digits] == [3, 2, 4] and "".join(digits).isdigit()
    assert len(set(sandbox.ccnow_order_ids())) == 50


# --- admin endpoints and runner -----------------------------------------------------------------


async def test_admin_orders_and_set_status(serve: Serve, http: aiohttp.ClientSession) -> None:
    sandbox, base = await serve(orders=3)
    async with http.get(base + "/_sandbox/orders") as resp:
        orders = await resp.json()
    assert [o["id"] for o in orders["ccv"]] == sandbox.ccv_order_ids()
    assert [o["id"] for o in orders["ccnow"]] == sandbox.ccnow_order_ids()
    assert set(orders["ccv"][0]) == {"id", "status", "externalReference"}
    ccnow_id = sandbox.ccnow_order_ids()[0]
    admin = f"{base}/_sandbox/orders/ccnow/{ccnow_id.replace('-', '')}"
    async with http.post(admin, json={"status": "pending"}) as resp:
        assert await resp.json() == {"id": ccnow_id, "status": "pending", "externalReference": None}
    assert sandbox.status("ccnow", ccnow_id) == "pending"
    for url, body, code in [
        (admin, {"status": "has space"}, 400),
        (admin, {"state": "pending"}, 400),
        (admin, ["pending"], 400),
        (f"{base}/_sandbox/orders/ccnow/123-45-678", {"status": "pending"}, 404),
        (f"{base}/_sandbox/orders/paypal/x", {"status": "pending"}, 404),
        (f"{base}/_sandbox/orders/ccv/nope", {"status": "New"}, 404),
    ]:
        async with http.post(url, json=body) as resp:
            assert resp.status == code, (url, body)
    async with http.get(base + "/_sandbox/stats") as resp:
        stats = await resp.json()
    assert stats["transitions"] == 1
    assert stats["history"]["ccnow"][ccnow_id][-1][1] == "pending"


async def test_run_sandbox_prints_url_and_stops(
    http: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    stop = asyncio.Event()
    options = SandboxOptions(orders=2, advance=False)
    task = asyncio.create_task(run_sandbox(options, "127.0.0.1", 0, stop=stop))
    output = ""

    def printed() -> bool:
        nonlocal output
        output += capsys.readouterr().out
        return output.count("\n") >= 2

    await poll_until(printed)
    first, second = output.splitlines()[:2]
    assert first.startswith("sandbox listening on http://127.0.0.1:")
    assert "t_sandbox" in second and "x_clientid=sandbox" in second
    base = first.removeprefix("sandbox listening on ")
    async with http.get(base + "/_sandbox/stats") as resp:
        assert resp.status == 200
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(base + "/_sandbox/stats")


async def test_run_sandbox_stops_on_cancel(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(run_sandbox(SandboxOptions(orders=1), "127.0.0.1", 0))
    await poll_until(lambda: "listening" in capsys.readouterr().out)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_bad_options_are_refused() -> None:
    for bad in (
        {"speed": 0},
        {"drop_notifications": 1.5},
        {"orders": -1},
        {"ccv_api_key": ""},
        {"ccnow_notification_url": "ftp://127.0.0.1/x"},
        {"ccnow_notification_url": "http://example.com/x"},
    ):
        with pytest.raises(ValueError):
            SandboxOptions(**bad)
