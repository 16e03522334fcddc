"""A stop of the receiver names the notification checks it cut short (bounded): CCV calls a
notification URL once, so an operator needs them to check by hand."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from yarl import URL

from reconciler.metrics import Metrics
from reconciler.server.cancelled import MAX_NAMED
from tests.server.conftest import FakeHub, ccv_path
from tests.server.test_receiver_edges import CCNOW_PATH, serving


def cancelled_line(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    [record] = [r for r in caplog.records if r.getMessage() == "notification.checks_cancelled"]
    fields: dict[str, Any] = record.__dict__["fields"]
    return fields


async def post(port: int, path: str, body: bytes = b"") -> None:
    async with aiohttp.ClientSession() as session:
        url = URL(f"http://127.0.0.1:{port}{path}", encoded=True)
        async with session.post(url, data=body) as response:
            assert response.status == 202


async def test_the_stop_names_the_orders_whose_checks_it_cancelled(
    hub: FakeHub, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    hub.gate = asyncio.Event()  # never opened: every check is under way at the stop
    async with serving(hub, metrics) as (_, port):
        await post(port, ccv_path(order_id="O-9"))
        await post(port, ccv_path(reference="INV-7"))
        await post(port, CCNOW_PATH, b"x_order_id=396-10-1142&y=396101143")
        await hub.wait_calls(3)
    line = cancelled_line(caplog)
    assert line["count"] == 3 and line["more"] == 0
    assert sorted(line["orders"], key=repr) == sorted(
        [
            {"source": "ccv", "account": "default", "order_id": "O-9"},
            {"source": "ccv", "account": "default", "external_reference": "INV-7"},
            {"source": "ccnow", "account": "default", "order_id": "396-10-1142"},
            {"source": "ccnow", "account": "default", "order_id": "396-10-1143"},
        ],
        key=repr,
    )
    assert "catch-up" in line["hint"]


async def test_the_stops_line_names_a_bounded_number_of_orders(
    hub: FakeHub, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    hub.gate = asyncio.Event()
    orders = [f"O-{n}" for n in range(MAX_NAMED + 5)]
    async with serving(hub, metrics) as (_, port):
        for order_id in orders:
            await post(port, ccv_path(order_id=order_id))
        await hub.wait_calls(len(orders))
    line = cancelled_line(caplog)
    assert line["count"] == len(orders) and line["more"] == 5
    assert len(line["orders"]) == MAX_NAMED
    assert {o["order_id"] for o in line["orders"]} <= set(orders)
