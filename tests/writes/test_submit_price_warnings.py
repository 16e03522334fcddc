"""A submit whose cart's prices give warnings only goes out, and its warnings come back as its
errors would: the API's answer carries `Reconciler-Pricing-Warnings` (their count, as a pricing
PATCH's) and `Reconciler-Pricing-Problems` (the problems, the 422's `problems` shape, as JSON,
percent-encoded), `ccv submit` says each on stderr (`reconciler: warning: PATH: ...`) and
exits 0. Before, the integrator never saw them. Real HTTP against the daemon's API and a fake
CCV on 127.0.0.1; the CLI in this process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import GOOD_PRICES, Api, api_toml

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
