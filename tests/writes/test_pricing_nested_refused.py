"""A bad price below the body's top, or a partial cart, is refused where it is met: `ccv
check-pricing` exits 65 naming its path, and a submit carrying one is refused (API 422, `ccv
submit` 65) with nothing recorded or sent to CCV. Before, both passed: exit 0, API 201."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from reconciler.writes.submit_prices import REFUSED
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import Api, api_toml

EXAMPLE = json.loads((Path(__file__).parent / "pricing_example.json").read_text())
PRODUCT = "$.order.shoppingCart.salesPackages[0].products[0]"
BAD_PERIODS = [
    {"period": "Monthly", "excludingTax": -100, "singleExcludingTax": "x", "includingTax": 121.001}
]
PARTIAL_CART = {
    "currency": "USD",
    "shippingCost": -5,
    "oneOffPriceDiscount": 10,
    "oneOffPriceCouponCode": "",
}


def with_bad_product() -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(EXAMPLE)
    body["order"]["shoppingCart"]["salesPackages"][0]["products"][0]["periodPricingDetails"] = (
        BAD_PERIODS
    )
    return body


async def test_check_pricing_refuses_a_bad_products_periods() -> None:
    stdin = json.dumps(with_bad_product()).encode()
    result = await call_cli("ccv", "check-pricing", "--json", "-", stdin=stdin)
    assert result.code == 65, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [p["path"] for p in report["problems"] if p["blocking"]] == [
        f"{PRODUCT}.periodPricingDetails[0].excludingTax",
        f"{PRODUCT}.periodPricingDetails[0].singleExcludingTax",
        f"{PRODUCT}.periodPricingDetails[0].includingTax",
    ]


async def test_a_submit_with_a_partial_cart_or_a_bad_product_is_refused_unsent(
    api: Api, fake: FakeCCVWrites
) -> None:
    partial = submit_body(
        externalReference="pn-1", order={"shoppingCart": {**PARTIAL_CART, "salesPackages": []}}
    )
    status, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=partial)
    assert status == 422, document
    assert [p["path"] for p in document["problems"] if p["blocking"]] == [
        "$.order.shoppingCart.currency",
        "$.order.shoppingCart.shippingCost",
        "$.order.shoppingCart.oneOffPriceCouponCode",
    ]
    # The document's example order, its cart's own prices null, one product's prices bad.
    nested = submit_body(externalReference="pn-2", order=with_bad_product()["order"])
    status, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=nested)
    assert status == 422, document
    blocking = [p["path"] for p in document["problems"] if p["blocking"]]
    assert blocking and all(p.startswith(f"{PRODUCT}.periodPricingDetails[0].") for p in blocking)
    assert fake.submits == []
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]
    # The example order as it is goes out.
    good = submit_body(externalReference="pn-3", order=EXAMPLE["order"])
    status, document, headers = await api.call("POST", "/api/v1/ccv/orders", body=good)
    assert status == 201, document
    assert [s["externalReference"] for s in fake.submits] == ["pn-3"]
    assert "Reconciler-Pricing-Warnings" not in headers


async def test_ccv_submit_refuses_a_partial_cart_unsent(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    body = submit_body(externalReference="pn-cli", order={"shoppingCart": {"shippingCost": -5}})
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=json.dumps(body).encode())
    assert (result.code, result.stdout) == (65, ""), result.stderr
    assert result.stderr.splitlines() == [
        f"reconciler: error: {REFUSED}",
        "reconciler: error: $.order.shoppingCart.shippingCost: the amount must not be negative"
        " (expected >= 0, found -5.00)",
    ]
    assert fake.submits == []
    assert not (tmp_path / "reconciler.db").exists()
