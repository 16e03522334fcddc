"""The pricing check's tax lines: a period's one tax line whose taxAmount is not its
excludingTax x taxRate % (to the cent, any rounding of it accepted), and a tax rate listed twice
in one period, are warnings (the document says what the fields are, not that CCV checks them):
before, either passed unremarked."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.writes.pricing import blocking, check_pricing
from tests.writes.test_pricing import cart

AT = "$.periodPricingDetails[0]"


def one_off(excluding: float, taxes: list[tuple[float, float]]) -> dict[str, Any]:
    """A cart of one OneOff period, consistent but for what its tax lines say."""
    including = round(excluding + sum(t for _, t in taxes), 2)
    return cart(
        shippingCost=0,
        oneOffPriceDiscount=0,
        oneOffPriceCouponCode="",
        totalAmountToBePaidImmediately=including,
        totalRevenueForFullYear=including,
        periodPricingDetails=[
            {
                "period": "OneOff",
                "excludingTax": excluding,
                "singleExcludingTax": excluding,
                "includingTax": including,
                "taxAmountsPerTaxRate": [{"taxRate": r, "taxAmount": t} for r, t in taxes],
            }
        ],
    )


@pytest.mark.parametrize(
    ("excluding", "rate", "amount"),
    [
        (100, 21, 21),
        (10.05, 21, 2.11),  # 2.1105 rounded to the cent
        (10.05, 21, 2.12),  # ... or up
        (19.99, 5.5, 1.1),  # 1.09945: the rate's own decimals
        (7.5, 0, 0),
    ],
)
def test_a_tax_amount_that_is_its_base_times_its_rate_to_the_cent_passes(
    excluding: float, rate: float, amount: float
) -> None:
    assert check_pricing(one_off(excluding, [(rate, amount)])) == []


@pytest.mark.parametrize(
    ("excluding", "rate", "amount", "expected"),
    [
        (100, 21, 12, "21.00"),  # digits swapped
        (10.05, 21, 2.1, "2.11"),  # more than a cent off 2.1105
        (100, 6, 21, "6.00"),  # the rate of another line
    ],
)
def test_a_tax_amount_that_is_not_its_base_times_its_rate_warns(
    excluding: float, rate: float, amount: float, expected: str
) -> None:
    problems = check_pricing(one_off(excluding, [(rate, amount)]))
    assert [(p.path, p.expected, p.blocking) for p in problems] == [
        (f"{AT}.taxAmountsPerTaxRate[0].taxAmount", expected, False)
    ]
    assert problems[0].line().startswith("warning: ")
    assert "excludingTax x taxRate %" in problems[0].message


def test_a_tax_rate_listed_twice_in_a_period_warns() -> None:
    problems = check_pricing(one_off(100, [(21, 10.5), (21, 10.5)]))
    assert [(p.path, p.found, p.blocking) for p in problems] == [
        (f"{AT}.taxAmountsPerTaxRate[1].taxRate", "21", False)
    ]
    assert f"also at {AT}.taxAmountsPerTaxRate[0]" in problems[0].message
    assert not blocking(problems)


def test_several_rates_are_not_checked_against_the_base() -> None:
    # What part of excludingTax each rate taxes is not given: nothing to compare.
    assert check_pricing(one_off(100, [(21, 10.5), (6, 3)])) == []


def test_the_tax_lines_warn_beside_a_blocking_problem() -> None:
    body = one_off(100, [(21, 12)])
    body["currency"] = "USD"
    problems = check_pricing(body)
    assert [(p.path, p.blocking) for p in problems] == [
        ("$.currency", True),
        (f"{AT}.taxAmountsPerTaxRate[0].taxAmount", False),
    ]


def products_cart(prices: list[float], taxes: list[float], total_tax: float) -> dict[str, Any]:
    """A cart of one package of products, each one's OneOff tax at 21 % rounded on its own,
    the package and the cart the sums of them (as the document says a cart's periods are)."""

    def period(excluding: float, tax: float) -> list[dict[str, Any]]:
        including = round(excluding + tax, 2)
        return [
            {
                "period": "OneOff",
                "excludingTax": excluding,
                "singleExcludingTax": excluding,
                "includingTax": including,
                "taxAmountsPerTaxRate": [{"taxRate": 21, "taxAmount": tax}],
            }
        ]

    excluding = round(sum(prices), 2)
    products = [
        {"sku": f"P{n}", "quantity": 1, "periodPricingDetails": period(p, t)}
        for n, (p, t) in enumerate(zip(prices, taxes, strict=True))
    ]
    including = round(excluding + total_tax, 2)
    body = one_off(excluding, [(21, total_tax)])
    body["periodPricingDetails"] = period(excluding, total_tax)
    package = {"periodPricingDetails": period(excluding, total_tax), "products": products}
    body["order"] = {"shoppingCart": {"salesPackages": [package]}}
    assert body["totalAmountToBePaidImmediately"] == including
    return body


def test_a_carts_tax_summed_from_its_products_taxes_rounded_each_passes() -> None:
    # Ten products of 0.10: 0.021 tax each, 0.02 to the cent; the cart's 0.20 is their sum, a
    # cent from its 1.00 x 21 % (0.21). Each product rounded on its own is a valid invoice.
    body = products_cart([0.10] * 10, [0.02] * 10, 0.20)
    assert check_pricing(body) == []
    # Further off than the products' roundings can make it, it still warns.
    body = products_cart([0.10] * 10, [0.02] * 10, 0.10)
    problems = check_pricing(body)
    assert [(p.path, p.expected) for p in problems if "taxAmount" in p.path] == [
        (f"{AT}.taxAmountsPerTaxRate[0].taxAmount", "0.21")
    ]
