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
