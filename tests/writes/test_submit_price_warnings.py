"""A submit whose cart's prices give warnings only goes out, and its warnings come back as its
errors would: the API's answer carries `Reconciler-Pricing-Warnings` (their count, as a pricing
PATCH's) and `Reconciler-Pricing-Problems` (the problems, the 422's `problems` shape, as JSON,
percent-encoded), `ccv submit` says each on stderr (`reconciler: warning: PATH: ...`) and
exits 0. Before, the integrator never saw them. Real HTTP against the daemon's API and a fake
CCV on 127.0.0.1; the CLI in this process."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from reconciler.writes.pricing_values import Problem
from reconciler.writes.submit_outcome import own_header
from reconciler.writes.submit_prices import PROBLEMS_HEADER, PROBLEMS_HEADER_MAX, warning_headers
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import GOOD_PRICES, Api, api_toml, serve_api

GOOD_CART = {k: v for k, v in GOOD_PRICES.items() if k != "order"}
WARNED_CART = {**GOOD_CART, "totalRevenueForFullYear": 999}
REVENUE = "$.order.shoppingCart.totalRevenueForFullYear"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


def cart_body(cart: dict[str, Any], ref: str) -> dict[str, Any]:
    return submit_body(externalReference=ref, order={"orderNotes": None, "shoppingCart": cart})


def problems(headers: Any) -> list[dict[str, Any]]:
    return json.loads(unquote(headers["Reconciler-Pricing-Problems"]))  # type: ignore[no-any-return]


async def test_a_submit_with_warnings_only_gives_them_back_in_the_422_shape(
    api: Api, fake: FakeCCVWrites
) -> None:
    status, document, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=cart_body(WARNED_CART, "pw-1")
    )
    assert status == 201, document
    assert set(document) == {"orderId"}  # CCV's body, as it came
    assert headers["Reconciler-Pricing-Warnings"] == "1"
    [warning] = problems(headers)
    assert warning["path"] == REVENUE and warning["blocking"] is False
    assert set(warning) == {"path", "message", "expected", "found", "blocking"}
    assert (warning["expected"], warning["found"]) == ("121.00", "999.00")
    # A consistent cart: checked, nothing to say.
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=cart_body(GOOD_CART, "pw-2")
    )
    assert status == 201
    assert (headers["Reconciler-Pricing-Warnings"], problems(headers)) == ("0", [])
    # A cart without prices is not checked: neither header.
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="pw-3")
    )
    assert status == 201
    assert "Reconciler-Pricing-Warnings" not in headers
    assert "Reconciler-Pricing-Problems" not in headers


async def test_every_answer_to_a_checked_submit_carries_them(api: Api, fake: FakeCCVWrites) -> None:
    fake.submit_replies = [json_reply(500, {"error": "Server error"})]
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=cart_body(WARNED_CART, "pw-4")
    )
    assert status == 500 and headers["Reconciler-Pricing-Warnings"] == "1"
    # reconciler's own answer (submitted already) too.
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=cart_body(WARNED_CART, "pw-4")
    )
    assert status == 409 and [p["path"] for p in problems(headers)] == [REVENUE]


async def test_ccv_submit_says_the_warnings_and_submits(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(cart_body(WARNED_CART, "pw-cli")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() in fake.orders
    warned = [line for line in result.stderr.splitlines() if line.startswith("reconciler: ")]
    assert warned == [
        f"reconciler: warning: {REVENUE}: matches no usual recipe (OneOff + 12 x Monthly + "
        "Yearly, with or without tax); the document does not say how it is made (expected "
        "121.00, found 999.00)"
    ], result.stderr
    assert len(fake.submits) == 1


async def test_a_cart_with_thousands_of_warnings_answers_at_once(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # A 100 KB cart listing one tax rate 3000 times gives 3000 warnings: the header was cut
    # one warning at a time, each cut encoding the whole list again (3000: half a minute, on
    # the daemon's loop, after CCV made the order).
    cart = json.loads(json.dumps(GOOD_CART))
    cart["periodPricingDetails"][0]["taxAmountsPerTaxRate"] += [
        {"taxRate": 21, "taxAmount": 0}
    ] * 3000
    async with serve_api(tmp_path, fake, api_extra="max_body = 1048576") as api:
        started = time.monotonic()
        status, document, headers = await api.call(
            "POST", "/api/v1/ccv/orders", body=cart_body(cart, "pw-many")
        )
    elapsed = time.monotonic() - started
    assert status == 201, document
    count = int(headers["Reconciler-Pricing-Warnings"])
    assert count >= 3000
    value = headers["Reconciler-Pricing-Problems"]
    assert len(value) <= PROBLEMS_HEADER_MAX
    shown = problems(headers)  # whole problems: it parses, each has all its fields
    assert 0 < len(shown) < count
    assert all(set(p) == {"path", "message", "expected", "found", "blocking"} for p in shown)
    # One more would not have fitted.
    assert len(own_header(json.dumps([*shown, shown[-1]]))) > PROBLEMS_HEADER_MAX
    assert elapsed < 10, elapsed  # was about 30 s on a quiet machine


def test_the_header_of_a_huge_list_costs_what_its_first_problems_cost() -> None:
    warned = [
        Problem(f"$.order.shoppingCart.x[{i}]", "not the sum", "1.00", "2.00", blocking=False)
        for i in range(100_000)
    ]
    started = time.monotonic()
    headers = warning_headers(warned, None)
    elapsed = time.monotonic() - started
    assert headers["Reconciler-Pricing-Warnings"] == "100000"
    shown = json.loads(unquote(headers["Reconciler-Pricing-Problems"]))
    assert shown == [p.to_json() for p in warned[: len(shown)]]
    assert len(own_header(json.dumps([*shown, warned[len(shown)].to_json()]))) > 4096
    assert len(headers["Reconciler-Pricing-Problems"]) <= 4096
    assert elapsed < 2, elapsed  # one problem at a time, none past the bound
    # A list that fits is given whole; an empty one is "[]".
    assert json.loads(unquote(warning_headers(warned[:3], None)[PROBLEMS_HEADER])) == [
        p.to_json() for p in warned[:3]
    ]
    assert warning_headers([], None)[PROBLEMS_HEADER] == "[]"
