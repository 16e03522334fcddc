"""Real carts a reviewer found refused once every nested price got the top's blocking rules: a
null in a product's period or tax line, a discount line (negative amounts), a sub-cent unit
price, a product's includingTax one cent off excl + tax (a gross-price catalogue rounds each
product on its own), and, in a submit without prices of its own, a key such as
`storeInformation.Currency` that is no price. Each is now said as a warning: `ccv check-pricing`
exits 0, the API's submit answers 201 and goes to CCV, the warnings in its headers. What CCV
could not read at all (a `"Daily"` period, an amount `"x"`) is still refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from reconciler.writes.pricing import check_pricing
from reconciler.writes.submit_prices import cart_problems
from tests.conftest import call_cli
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import Api

EXAMPLE = json.loads((Path(__file__).parent / "pricing_example.json").read_text())
PACKAGE = "$.order.shoppingCart.salesPackages[0]"
PRODUCT = f"{PACKAGE}.products[0]"
PERIOD = f"{PRODUCT}.periodPricingDetails[0]"


def _with_product_period(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(EXAMPLE)
    product = body["order"]["shoppingCart"]["salesPackages"][0]["products"][0]
    product["periodPricingDetails"][0].update(changes)
    return body


def _null_amount() -> dict[str, Any]:
    return _with_product_period(excludingTax=None)


def _null_tax_rate() -> dict[str, Any]:
    return _with_product_period(taxAmountsPerTaxRate=[{"taxRate": None, "taxAmount": 0}])


def _discount_line() -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(EXAMPLE)
    products = body["order"]["shoppingCart"]["salesPackages"][0]["products"]
    products.append(
        {
            "name": "Welcome discount",
            "sku": "DISCOUNT",
            "quantity": 1,
            "toBePaidImmediately": -6.05,
            "periodPricingDetails": [
                {
                    "period": "Monthly",
                    "excludingTax": -5,
                    "singleExcludingTax": -5,
                    "includingTax": -6.05,
                    "taxAmountsPerTaxRate": [{"taxRate": 21, "taxAmount": -1.05}],
                }
            ],
        }
    )
    return body


def _sub_cent_unit_price() -> dict[str, Any]:
    return _with_product_period(
        excludingTax=1.45,
        singleExcludingTax=0.145,
        includingTax=1.75,
        taxAmountsPerTaxRate=[{"taxRate": 21, "taxAmount": 0.3}],
    )


def _one_cent_rounding() -> dict[str, Any]:
    # A catalogue's gross price 9.99 (21 %), its net and tax each rounded on their own from
    # per-unit prices: 8.25 + 1.73 is 9.98, a cent off the gross.
    return _with_product_period(
        excludingTax=8.25,
        singleExcludingTax=8.25,
        includingTax=9.99,
        taxAmountsPerTaxRate=[{"taxRate": 21, "taxAmount": 1.73}],
    )


# (id, the body, the warned path, expected, found)
CASES = [
    ("null nested amount", _null_amount, f"{PERIOD}.excludingTax", "a number", "null"),
    (
        "null tax rate",
        _null_tax_rate,
        f"{PERIOD}.taxAmountsPerTaxRate[0].taxRate",
        "a number",
        "null",
    ),
    (
        "product discount line",
        _discount_line,
        f"{PACKAGE}.products[2].periodPricingDetails[0].excludingTax",
        ">= 0",
        "-5.00",
    ),
    ("sub-cent unit price", _sub_cent_unit_price, f"{PERIOD}.singleExcludingTax", "0.14", "0.145"),
    ("one-cent tax rounding", _one_cent_rounding, f"{PERIOD}.includingTax", "9.98", "9.99"),
]


@pytest.mark.parametrize(
    ("make", "path", "expected", "found"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_reviewer_case_is_a_warning_with_its_path(
    make: Any, path: str, expected: str, found: str
) -> None:
    problems = check_pricing(make())
    assert [p.line() for p in problems if p.blocking] == []
    assert (path, expected, found) in [(p.path, p.expected, p.found) for p in problems]


@pytest.mark.parametrize(("make", "path"), [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
async def test_check_pricing_exits_0_saying_the_warning(make: Any, path: str) -> None:
    result = await call_cli(
        "ccv", "check-pricing", "--json", "-", stdin=json.dumps(make()).encode()
    )
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert path in [p["path"] for p in report["problems"] if not p["blocking"]]


def _headers_problems(headers: Any) -> list[dict[str, Any]]:
    return json.loads(unquote(headers["Reconciler-Pricing-Problems"]))  # type: ignore[no-any-return]


async def test_each_reviewer_case_is_submitted_with_its_warnings(
    api: Api, fake: FakeCCVWrites
) -> None:
    sent = []
    for i, (_, make, path, _, _) in enumerate(CASES):
        ref = f"pl-{i}"
        body = submit_body(externalReference=ref, order=make()["order"])
        status, document, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
        assert status == 201, document
        assert path in [p["path"] for p in _headers_problems(headers)]
        assert int(headers["Reconciler-Pricing-Warnings"]) >= 1
        sent.append(ref)
    assert [s["externalReference"] for s in fake.submits] == sent


def _unpriced_with_non_price_twins() -> dict[str, Any]:
    order: dict[str, Any] = copy.deepcopy(EXAMPLE["order"])
    order["storeInformation"]["Currency"] = "EUR"
    order["storeInformation"]["currency"] = "EUR"
    product = order["shoppingCart"]["salesPackages"][0]["products"][0]
    product["productOptions"]["Period"] = "Monthly"
    return order


def test_an_unpriced_submit_reads_no_case_twin_outside_its_prices() -> None:
    order = _unpriced_with_non_price_twins()
    assert cart_problems({"order": order}) == []
    # Within a price it is still refused, and so is one among the cart's own pricing fields.
    order["shoppingCart"]["salesPackages"][0]["periodPricingDetails"][0]["IncludingTax"] = 1
    order["shoppingCart"]["Currency"] = "USD"
    order["shoppingCart"]["Sku"] = "not a price"
    assert sorted(p.path for p in cart_problems({"order": order}) if p.blocking) == [
        "$.order.shoppingCart.Currency",
        f"{PACKAGE}.periodPricingDetails[0].IncludingTax",
    ]


async def test_an_unpriced_submit_with_store_information_currency_goes_out(
    api: Api, fake: FakeCCVWrites
) -> None:
    body = submit_body(externalReference="pl-store", order=_unpriced_with_non_price_twins())
    status, document, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert status == 201, document
    assert "Reconciler-Pricing-Warnings" not in headers
    assert [s["externalReference"] for s in fake.submits] == ["pl-store"]


async def test_what_ccv_could_not_read_is_still_refused_unsent(
    api: Api, fake: FakeCCVWrites
) -> None:
    for ref, changes, path in [
        ("pl-daily", {"period": "Daily"}, f"{PERIOD}.period"),
        ("pl-x", {"singleExcludingTax": "x"}, f"{PERIOD}.singleExcludingTax"),
    ]:
        body = submit_body(externalReference=ref, order=_with_product_period(**changes)["order"])
        status, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=body)
        assert status == 422, document
        assert [p["path"] for p in document["problems"] if p["blocking"]] == [path]
    assert fake.submits == []
