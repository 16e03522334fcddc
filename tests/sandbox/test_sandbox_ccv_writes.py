"""The simulator's CCV write calls over real HTTP on 127.0.0.1: submit and pricing answer like
CCV (400 on missing/invalid fields, 401, 403), and a submit can lose its answer after the order
was made."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.commands.demo import demo_config
from reconciler.daemon import Daemon
from reconciler.runtime import Runtime
from reconciler.sandbox import CCV_SUBMIT_PATH, Sandbox, SandboxOptions
from reconciler.sandbox.ccv_writes import PRICING_PATH
from reconciler.systemd import Notifier
from tests.conftest import call_cli, free_port
from tests.sandbox.conftest import Serve
from tests.sandbox.test_sandbox import KEY, basic, poll_until, status_url

EXAMPLE = json.loads((Path(__file__).parents[1] / "writes" / "pricing_example.json").read_text())


def pricing(**changes: Any) -> dict[str, Any]:
    """The pricing document's example body with top-level fields changed (None: removed)."""
    body: dict[str, Any] = copy.deepcopy(EXAMPLE)
    for name, value in changes.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def period(**changes: Any) -> dict[str, Any]:
    """The example body with its one period's fields changed (None: removed)."""
    body = pricing()
    detail = body["periodPricingDetails"][0]
    for name, value in changes.items():
        if value is None:
            detail.pop(name, None)
        else:
            detail[name] = value
    return body


# --- pricing ------------------------------------------------------------------------------------


async def test_pricing_is_set_with_the_key_and_refused_without(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(orders=2)
    for auth in ({}, basic("t_wrong")):
        async with http.patch(base + PRICING_PATH, json=pricing(), headers=auth) as resp:
            assert resp.status == 401
    async with http.patch(base + PRICING_PATH, json=pricing(), headers=KEY) as resp:
        assert resp.status == 200
        assert await resp.json() == {"message": "Shopping cart pricing details set"}
    assert sandbox.stats.pricing_set == 1


async def test_pricing_takes_both_spellings_and_sums_that_do_not_add_up(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """Like CCV, which checks fields, not sums (and invoices the partner for wrong prices)."""
    sandbox, base = await serve(orders=2)
    table_spelling = period(
        excludingTax=None, singleExcludingTax=None, exludingTax=10, singleExludingTax=10
    )
    wrong_sums = period(includingTax=99.99)
    for body in (table_spelling, wrong_sums, pricing(totalAmountToBePaidImmediately=5)):
        async with http.patch(base + PRICING_PATH, json=body, headers=KEY) as resp:
            assert resp.status == 200, await resp.text()
    assert sandbox.stats.pricing_set == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (pricing(currency=None), "currency"),
        (pricing(currency="USD"), "currency"),
        (pricing(shippingCost=None), "shippingCost"),
        (pricing(shippingCost="0"), "shippingCost"),
        (pricing(oneOffPriceDiscount=True), "oneOffPriceDiscount"),
        (pricing(totalAmountToBePaidImmediately=None), "totalAmountToBePaidImmediately"),
        (pricing(totalRevenueForFullYear=[]), "totalRevenueForFullYear"),
        (pricing(oneOffPriceCouponCode=None), "oneOffPriceCouponCode"),
        (pricing(oneOffPriceCouponCode=0), "oneOffPriceCouponCode"),
        (pricing(order=None), "order"),
        (pricing(order=[]), "order"),
        (pricing(periodPricingDetails=None), "periodPricingDetails"),
        (pricing(periodPricingDetails={"period": "OneOff"}), "periodPricingDetails"),
        (pricing(periodPricingDetails=[5]), "periodPricingDetails[0]"),
        (period(period="Weekly"), "periodPricingDetails[0].period"),
        (period(excludingTax=None), "periodPricingDetails[0].excludingTax"),
        (period(singleExcludingTax="1"), "periodPricingDetails[0].singleExcludingTax"),
        (period(includingTax=None), "periodPricingDetails[0].includingTax"),
        (period(taxAmountsPerTaxRate={}), "periodPricingDetails[0].taxAmountsPerTaxRate"),
        (
            period(taxAmountsPerTaxRate=[{"taxRate": 21}]),
            "periodPricingDetails[0].taxAmountsPerTaxRate[0].taxAmount",
        ),
        ([], "body"),
    ],
)
async def test_pricing_with_a_missing_or_invalid_field_gets_400_naming_it(
    serve: Serve, http: aiohttp.ClientSession, body: object, field: str
) -> None:
    sandbox, base = await serve(orders=2)
    async with http.patch(base + PRICING_PATH, json=body, headers=KEY) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"].startswith(field + " ")
    assert sandbox.stats.pricing_set == 0


@pytest.mark.parametrize("raw", [b"{not json", b'{"shippingCost": NaN}', b"\xff"])
async def test_pricing_that_is_not_json_gets_400(
    serve: Serve, http: aiohttp.ClientSession, raw: bytes
) -> None:
    _, base = await serve(orders=2)
    headers = {"Content-Type": "application/json", **KEY}
    async with http.patch(base + PRICING_PATH, data=raw, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]


async def test_pricing_and_submit_get_403_from_the_fault(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(orders=2, faults="http403=1")
    async with http.patch(base + PRICING_PATH, json=pricing(), headers=KEY) as resp:
        assert resp.status == 403
    submit = {"notifyCustomerByEmail": False, "order": {}}
    async with http.post(base + CCV_SUBMIT_PATH, json=submit, headers=KEY) as resp:
        assert resp.status == 403
    assert sandbox.stats.pricing_set == 0
    assert len(sandbox.ccv_order_ids()) == 2


# --- submit -------------------------------------------------------------------------------------


async def test_a_submitted_order_notifies_only_for_its_notify_on_statuses(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    calls: list[str] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        calls.append(request.match_info["ref"])
        arrived.set()
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook/{ref}", hook)
    async with TestServer(app, host="127.0.0.1", port=0) as receiver:
        sandbox, base = await serve(orders=2, drop_notifications=0.0)
        body = {
            "notifyCustomerByEmail": True,
            "externalReference": "r-1",
            "statusNotificationInformation": {
                "notificationUrl": str(receiver.make_url("/hook/r-1")),
                "notifyOnStatus": ["Screening", "Completed"],
            },
            "order": {},
        }
        async with http.post(base + CCV_SUBMIT_PATH, json=body, headers=KEY) as resp:
            assert resp.status == 201
            order_id = (await resp.json())["orderId"]
        for status in ("Incomplete", "AwaitingPayment", "Screening", "New"):
            sandbox.set_status("ccv", order_id, status)
        await asyncio.wait_for(arrived.wait(), 5)
        await sandbox.stop()  # lets calls in flight finish
    assert calls == ["r-1"]
    assert sandbox.stats.notifications_sent == 1


async def test_a_submit_timeout_creates_the_order_and_never_answers(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    sandbox, base = await serve(orders=2, faults="submit_timeout=1")
    body = {"notifyCustomerByEmail": True, "externalReference": "lost-1", "order": {}}
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            base + CCV_SUBMIT_PATH,
            json=body,
            headers=KEY,
            timeout=aiohttp.ClientTimeout(total=0.5),
        ):
            pass
    created = sandbox.ccv_order_ids()[-1]
    assert len(sandbox.ccv_order_ids()) == 3
    assert sandbox.stats.submits_unanswered == 1
    # the order exists at CCV: its status answers, with the reference
    async with http.get(status_url(base, created), headers=KEY) as resp:
        assert await resp.json() == {"orderStatus": "Processing", "externalReference": "lost-1"}
    # a bad submit is still refused at once, and nothing is created for it
    async with http.post(base + CCV_SUBMIT_PATH, json={"order": {}}, headers=KEY) as resp:
        assert resp.status == 400
    # a submit held when the sandbox stops ends with a dropped connection, and stop is quick
    held = asyncio.ensure_future(http.post(base + CCV_SUBMIT_PATH, json=body, headers=KEY))
    await poll_until(lambda: sandbox.stats.submits_unanswered == 2)
    await asyncio.wait_for(sandbox.stop(), 2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await held


async def test_sandbox_help_documents_submit_timeout() -> None:
    shown = await call_cli("sandbox", "--help")
    assert shown.code == 0
    assert "submit_timeout" in " ".join(shown.stdout.split())
    refused = await call_cli(
        "sandbox", "--listen", "127.0.0.1:0", "--faults", "submit_timeout:ccnow=1"
    )
    assert refused.code == 2
    assert "submit_timeout is a ccv fault only" in refused.stderr


# --- through reconciler -------------------------------------------------------------------------


async def test_a_lost_submit_answer_through_reconciler_is_uncertain_once_then_settled(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The whole uncertain path against the simulator: reconciler's API forwards a submit,
    the sandbox makes the order and never answers; the submit is uncertain (one event, never
    sent again) until CCV's first notification for its reference; tracking it with the
    reference then follows the order."""
    sandbox = Sandbox(
        SandboxOptions(orders=0, advance=False, drop_notifications=0.0, faults="submit_timeout=1")
    )
    base = await sandbox.start("127.0.0.1", 0)
    config = demo_config(base, tmp_path / "r.db", free_port(), free_port())
    config = replace(config, ccv=(replace(config.ccv[0], timeout_s=0.5),))
    assert config.api is not None
    api = f"http://127.0.0.1:{config.api.listen_port}/api/v1"
    auth = {"Authorization": f"Bearer {config.api.token.reveal()}"}
    stop = asyncio.Event()
    try:
        async with Runtime(config) as rt:
            serving = asyncio.ensure_future(Daemon(config, rt, Notifier(None)).serve(stop))
            try:
                await until_listening(http, f"{api}/events", auth)
                body = {"notifyCustomerByEmail": True, "externalReference": "e2e-1", "order": {}}
                async with http.post(f"{api}/ccv/orders", json=body, headers=auth) as resp:
                    assert resp.status == 504
                    assert (await resp.json())["state"] == "uncertain"
                (order_id,) = sandbox.ccv_order_ids()
                # asked again, reconciler refuses: CCV never sees the order twice
                async with http.post(f"{api}/ccv/orders", json=body, headers=auth) as resp:
                    assert resp.status == 409
                assert sandbox.ccv_order_ids() == [order_id]
                assert sandbox.stats.submits_unanswered == 1

                sandbox.set_faults("")
                sandbox.set_status("ccv", order_id, "Incomplete")  # CCV notifies the reference
                await poll_until(lambda: sandbox.stats.notifications_sent == 1)
                submission = f"{api}/ccv/submissions/e2e-1"
                await until_json(http, submission, auth, lambda d: d["state"] == "resolved")

                track = {"source": "ccv", "order_id": order_id, "external_reference": "e2e-1"}
                async with http.post(f"{api}/orders", json=track, headers=auth) as resp:
                    assert resp.status == 201
                await until_json(
                    http,
                    f"{api}/orders/ccv/{order_id}?refresh=1",
                    auth,
                    lambda d: d["status"] == "Incomplete",
                )
                async with http.get(f"{api}/events", headers=auth) as resp:
                    events = (await resp.json())["events"]
            finally:
                stop.set()
                await serving
    finally:
        await sandbox.stop()
    uncertain = [e for e in events if e["type"] == "order.submit_uncertain"]
    assert len(uncertain) == 1
    assert "e2e-1" in json.dumps(uncertain[0])


async def until_listening(http: aiohttp.ClientSession, url: str, auth: dict[str, str]) -> None:
    """Wait until the API answers (the daemon starts it in the background; on a loaded
    machine that takes far longer than alone, so the deadline is long)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            async with http.get(url, headers=auth) as resp:
                assert resp.status == 200
                return
        except aiohttp.ClientConnectorError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on {url}")


async def until_json(
    http: aiohttp.ClientSession,
    url: str,
    auth: dict[str, str],
    done: Callable[[dict[str, Any]], bool],
    timeout_s: float = 10.0,
) -> None:
    """GET `url` until its JSON answer is `done`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with http.get(url, headers=auth) as resp:
            document = await resp.json()
        if resp.status == 200 and done(document):
            return
        assert asyncio.get_running_loop().time() < deadline, document
        await asyncio.sleep(0.05)
