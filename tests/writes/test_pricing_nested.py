"""The pricing check reaches every price of a body: each `periodPricingDetails` of the cart, its
sales packages and their products gets the per-period rules (blocking, at its full JSON path),
a product's `toBePaidImmediately` / `totalRevenueForFullYear` the amount rules, and a submit's
`order.shoppingCart` each pricing field that is not null its own field rules, whatever else the
cart holds. Before, nested periods were never checked (a product's `-100`, `"x"` and `"Daily"`
passed) and a submit's cart without periods or a total went to CCV unchecked (`"USD"`, a
negative shipping cost). A discount larger than what it discounts is said as such."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.writes.pricing import blocking, check_pricing
from reconciler.writes.pricing_values import Problem
from reconciler.writes.submit_prices import cart_problems, check_cart

# The pricing document's example body, verbatim (ccv-set-shopping-cart-pricing.txt).
EXAMPLE = json.loads((Path(__file__).parent / "pricing_example.json").read_text())
PACKAGE = "$.order.shoppingCart.salesPackages[0]"
PRODUCT = f"{PACKAGE}.products[0]"
# The outside probe's product periods: a negative amount, text, an unknown period, a tenth of
# a cent.
BAD_PERIODS = [
    {"period": "Daily", "excludingTax": -100, "singleExcludingTax": "x", "includingTax": 121.001}
]


def blocking_paths(problems: list[Problem]) -> list[str]:
    return [p.path for p in problems if p.blocking]


def example(**changes: Any) -> dict[str, Any]:
    """The example with `changes` made to its first package's first product."""
    body: dict[str, Any] = copy.deepcopy(EXAMPLE)
    body["order"]["shoppingCart"]["salesPackages"][0]["products"][0].update(changes)
    return body


def test_the_documents_example_still_gives_no_problem() -> None:
    assert check_pricing(EXAMPLE) == []
    assert cart_problems(EXAMPLE) == []


def test_the_probes_product_periods_are_each_refused_at_their_path() -> None:
    problems = check_pricing(example(periodPricingDetails=BAD_PERIODS))
    assert blocking_paths(problems) == [f"{PRODUCT}.periodPricingDetails[0].period"]
    # Its period known, each amount is refused on its own.
    periods = [{**BAD_PERIODS[0], "period": "Monthly"}]
    problems = check_pricing(example(periodPricingDetails=periods))
    assert blocking_paths(problems) == [
        f"{PRODUCT}.periodPricingDetails[0].excludingTax",
        f"{PRODUCT}.periodPricingDetails[0].singleExcludingTax",
        f"{PRODUCT}.periodPricingDetails[0].includingTax",
    ]


def _period(**changes: Any) -> dict[str, Any]:
    line = {
        "period": "Monthly",
        "excludingTax": 10,
        "singleExcludingTax": 10,
        "includingTax": 12.1,
        "taxAmountsPerTaxRate": [{"taxRate": 21, "taxAmount": 2.1}],
    }
    line.update(changes)
    return line


# Each per-period rule broken alone in a product's and in a package's periods: (id, the periods,
# the blocking path under the list).
NESTED_RULES: list[tuple[str, object, str]] = [
    ("unknown period", [_period(period="Daily")], "[0].period"),
    ("period twice", [_period(), _period()], "[1].period"),
    ("including != excluding + tax", [_period(includingTax=12.2)], "[0].includingTax"),
    ("negative", [_period(singleExcludingTax=-1)], "[0].singleExcludingTax"),
    ("not in cents", [_period(singleExcludingTax=10.001)], "[0].singleExcludingTax"),
    ("text", [_period(excludingTax="10", exludingTax=None)], "[0].excludingTax"),
    ("too large", [_period(singleExcludingTax=1e16)], "[0].singleExcludingTax"),
    (
        "tax amount negative",
        [_period(taxAmountsPerTaxRate=[{"taxRate": 21, "taxAmount": -2.1}])],
        "[0].taxAmountsPerTaxRate[0].taxAmount",
    ),
    ("a period not an object", [12], "[0]"),
    ("not a list", {"period": "OneOff"}, ""),
]


@pytest.mark.parametrize(
    ("periods", "at"), [c[1:] for c in NESTED_RULES], ids=[c[0] for c in NESTED_RULES]
)
@pytest.mark.parametrize("level", ["product", "package"])
def test_every_per_period_rule_blocks_in_products_and_packages(
    periods: object, at: str, level: str
) -> None:
    if isinstance(periods, list) and periods and isinstance(periods[0], dict):
        periods = [{k: v for k, v in p.items() if v is not None} for p in periods]
    body = copy.deepcopy(EXAMPLE)
    package = body["order"]["shoppingCart"]["salesPackages"][0]
    target = package["products"][1] if level == "product" else package
    target["periodPricingDetails"] = periods
    where = f"{PACKAGE}.products[1]" if level == "product" else PACKAGE
    problems = check_pricing(body)
    assert blocking_paths(problems) == [f"{where}.periodPricingDetails{at}"], [
        p.line() for p in problems
    ]


@pytest.mark.parametrize("name", ["toBePaidImmediately", "totalRevenueForFullYear"])
@pytest.mark.parametrize(
    ("value", "fine"),
    [(None, True), (0, True), (12.5, True), (-1, False), (0.001, False), ("5", False)],
)
def test_a_products_amounts_when_given_follow_the_amount_rules(
    name: str, value: object, fine: bool
) -> None:
    problems = check_pricing(example(**{name: value}))
    assert blocking_paths(problems) == ([] if fine else [f"{PRODUCT}.{name}"])


def test_a_consistent_priced_product_in_the_example_passes() -> None:
    periods = [_period(period="OneOff")]
    body = example(periodPricingDetails=periods, toBePaidImmediately=12.1)
    package = body["order"]["shoppingCart"]["salesPackages"][0]
    package["periodPricingDetails"] = copy.deepcopy(periods)
    body["periodPricingDetails"] = copy.deepcopy(periods)
    body.update(totalAmountToBePaidImmediately=12.1, totalRevenueForFullYear=12.1)
    assert check_pricing(body) == []


def test_the_package_sums_stay_warnings() -> None:
    problems = check_pricing(example(periodPricingDetails=[_period(period="OneOff")]))
    assert not blocking(problems)
    assert [p.path for p in problems] == [f"{PACKAGE}.periodPricingDetails"]


# --- a submit's cart: every pricing field given gets its field rules ---------------------------

CART = "$.order.shoppingCart"
# (id, the cart's pricing fields, the blocking paths under the cart)
PARTIAL_CARTS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "the probe's cart",
        {
            "currency": "USD",
            "shippingCost": -5,
            "oneOffPriceDiscount": 10,
            "oneOffPriceCouponCode": "",
        },
        [".currency", ".shippingCost", ".oneOffPriceCouponCode"],
    ),
    ("currency alone", {"currency": "USD"}, [".currency"]),
    ("shipping alone", {"shippingCost": -5}, [".shippingCost"]),
    ("revenue alone", {"totalRevenueForFullYear": -1}, [".totalRevenueForFullYear"]),
    (
        "discount without coupon",
        {"oneOffPriceDiscount": 10, "oneOffPriceCouponCode": ""},
        [".oneOffPriceCouponCode"],
    ),
    (
        "coupon without discount",
        {"oneOffPriceDiscount": 0, "oneOffPriceCouponCode": "X"},
        [".oneOffPriceCouponCode"],
    ),
    ("coupon not text", {"oneOffPriceCouponCode": 7}, [".oneOffPriceCouponCode"]),
    ("discount in tenths of cents", {"oneOffPriceDiscount": 0.001}, [".oneOffPriceDiscount"]),
    ("periods not a list", {"periodPricingDetails": {}}, [".periodPricingDetails"]),
    ("a product's periods", {}, [".salesPackages[0].products[0].periodPricingDetails[0].period"]),
    ("a field in another case", {"Currency": "USD"}, [".Currency"]),
]


def submit(cart: dict[str, Any], products: list[Any] | None = None) -> dict[str, Any]:
    package = {"periodPricingDetails": [], "products": products or []}
    return {"order": {"shoppingCart": {**cart, "salesPackages": [package]}}}


@pytest.mark.parametrize(
    ("cart", "expected"), [c[1:] for c in PARTIAL_CARTS], ids=[c[0] for c in PARTIAL_CARTS]
)
def test_a_submits_cart_without_prices_has_each_field_given_checked(
    cart: dict[str, Any], expected: list[str]
) -> None:
    products = [{"periodPricingDetails": BAD_PERIODS}] if not cart else None
    problems = cart_problems(submit(cart, products))
    assert blocking_paths(problems) == [CART + at for at in expected], [p.line() for p in problems]


@pytest.mark.parametrize(
    "cart",
    [
        {},
        {"currency": None, "shippingCost": None, "periodPricingDetails": None},
        {
            "currency": "EUR",
            "shippingCost": 0,
            "oneOffPriceCouponCode": "",
            "oneOffPriceDiscount": 0,
            "totalRevenueForFullYear": 0,
            "periodPricingDetails": [],
        },
        {"oneOffPriceDiscount": 10, "oneOffPriceCouponCode": None},  # its code not given yet
        {"oneOffPriceDiscount": 10.5, "oneOffPriceCouponCode": "WELCOME"},
    ],
    ids=["absent", "null", "defaults", "discount-alone", "discount-and-code"],
)
def test_a_configurators_defaults_and_sound_fields_pass(cart: dict[str, Any]) -> None:
    assert cart_problems(submit(cart)) == []


def test_a_cart_with_prices_is_still_checked_whole() -> None:
    # A total given: the cart's nulls are missing prices, as before.
    problems = cart_problems(submit({"totalAmountToBePaidImmediately": 0}))
    assert f"{CART}.currency" in blocking_paths(problems)


# --- a discount larger than what it discounts -----------------------------------------------


def test_a_discount_beyond_the_one_off_total_and_shipping_is_said_as_such() -> None:
    body = copy.deepcopy(EXAMPLE)
    body["periodPricingDetails"][0].update(excludingTax=1, singleExcludingTax=1, includingTax=1)
    body["periodPricingDetails"][0]["taxAmountsPerTaxRate"] = [{"taxRate": 0, "taxAmount": 0}]
    body.update(
        shippingCost=0.1,
        oneOffPriceDiscount=4,
        oneOffPriceCouponCode="BIG",
        totalAmountToBePaidImmediately=0,
        totalRevenueForFullYear=1,
    )
    problems = [p for p in check_pricing(body) if p.blocking]
    assert [(p.path, p.expected, p.found) for p in problems] == [
        ("$.oneOffPriceDiscount", "<= 1.10", "4.00")
    ]
    assert "exceeds the one-off total plus shipping" in problems[0].message
    # Equal to it is a total of 0, and fine.
    body["oneOffPriceDiscount"] = 1.1
    assert blocking_paths(check_pricing(body)) == []


def test_a_cart_without_prices_gives_back_warnings_only_when_there_are_some() -> None:
    # Nothing to say: no warning headers, as before.
    assert check_cart(submit({"currency": "EUR"})) is None
    # A package that is not the sum of its products: its warning comes back.
    body = {"order": copy.deepcopy(EXAMPLE["order"])}
    product = body["order"]["shoppingCart"]["salesPackages"][0]["products"][0]
    product["periodPricingDetails"] = [_period(period="OneOff")]
    warnings = check_cart(body)
    assert warnings is not None
    assert [(p.path, p.blocking) for p in warnings] == [(f"{PACKAGE}.periodPricingDetails", False)]
