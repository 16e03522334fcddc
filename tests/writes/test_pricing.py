"""The CCV pricing check: the document's example, every rule failing alone, and random carts."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.writes.pricing import blocking, check_pricing
from reconciler.writes.pricing_values import Problem

EXAMPLE = json.loads((Path(__file__).parent / "pricing_example.json").read_text())


def cart(**top: Any) -> dict[str, Any]:
    """A consistent cart: EUR 100 + 21 % tax one-off, 5 shipping, 10 off with a coupon."""
    body: dict[str, Any] = {
        "currency": "EUR",
        "shippingCost": 5,
        "oneOffPriceCouponCode": "WELCOME",
        "oneOffPriceDiscount": 10,
        "totalAmountToBePaidImmediately": 116,
        "totalRevenueForFullYear": 100 + 12 * 20,
        "periodPricingDetails": [
            {
                "period": "OneOff",
                "excludingTax": 100,
                "singleExcludingTax": 100,
                "includingTax": 121,
                "taxAmountsPerTaxRate": [{"taxRate": 21, "taxAmount": 21}],
            },
            {
                "period": "Monthly",
                "excludingTax": 20,
                "singleExcludingTax": 20,
                "includingTax": 24.2,
                "taxAmountsPerTaxRate": [{"taxRate": 21, "taxAmount": 4.2}],
            },
        ],
        "order": {},
    }
    body.update(top)
    return body


def paths(problems: list[Problem]) -> list[str]:
    return [p.path for p in problems if p.blocking]


def test_the_documents_example_is_consistent() -> None:
    assert check_pricing(EXAMPLE) == []


def test_a_consistent_cart_passes() -> None:
    assert check_pricing(cart()) == []


def test_the_tables_spelling_is_accepted() -> None:
    body = cart()
    for period in body["periodPricingDetails"]:
        period["exludingTax"] = period.pop("excludingTax")
        period["singleExludingTax"] = period.pop("singleExcludingTax")
    assert check_pricing(body) == []


def test_both_spellings_must_agree() -> None:
    body = cart()
    body["periodPricingDetails"][0]["exludingTax"] = 99
    assert paths(check_pricing(body)) == ["$.periodPricingDetails[0].exludingTax"]


def test_amounts_are_compared_to_the_cent_not_as_floats() -> None:
    # 0.1 + 0.2 != 0.3 in binary floating point; in cents it is equal.
    body = cart(
        totalAmountToBePaidImmediately=0.3,
        shippingCost=0,
        oneOffPriceDiscount=0,
        oneOffPriceCouponCode="",
        totalRevenueForFullYear=0.2,
        periodPricingDetails=[
            {
                "period": "OneOff",
                "excludingTax": 0.2,
                "singleExcludingTax": 0.2,
                "includingTax": 0.3,
                "taxAmountsPerTaxRate": [{"taxRate": 50, "taxAmount": 0.1}],
            }
        ],
    )
    assert check_pricing(body) == []
    body["periodPricingDetails"][0]["includingTax"] = 0.31
    [problem] = check_pricing(body)
    assert problem.path == "$.periodPricingDetails[0].includingTax"
    assert (problem.expected, problem.found) == ("0.30", "0.31")


DROP = object()
P = "periodPricingDetails"
TAX = "taxAmountsPerTaxRate"

# Each rule failing alone: a field changed (or dropped), and the one blocking problem it causes,
# reported at that field's JSON path.
ALONE: list[tuple[str, tuple[str | int, ...], object]] = [
    ("currency USD", ("currency",), "USD"),
    ("currency missing", ("currency",), DROP),
    ("unknown period", (P, 1, "period"), "Weekly"),
    ("including != excluding + tax", (P, 1, "includingTax"), 24.3),
    ("total to pay", ("totalAmountToBePaidImmediately",), 117),
    ("discount without coupon", ("oneOffPriceCouponCode",), ""),
    ("coupon not a string", ("oneOffPriceCouponCode",), None),
    ("negative shipping", ("shippingCost",), -5),
    ("NaN", ("totalRevenueForFullYear",), float("nan")),
    ("Infinity", (P, 0, "singleExcludingTax"), float("inf")),
    ("a tenth of a cent", (P, 0, "singleExcludingTax"), 100.001),
    ("too large to be exact", ("shippingCost",), 12345678901234567890123456789),
    ("too large, negative", (P, 0, TAX, 0, "taxAmount"), -1e300),
    ("amount as text", ("shippingCost",), "5"),
    ("amount as boolean", ("shippingCost",), True),
    ("amount missing", ("totalRevenueForFullYear",), DROP),
    ("excluding missing", (P, 1, "excludingTax"), DROP),
    ("tax rate out of range", (P, 0, TAX, 0, "taxRate"), 121),
    ("tax line not an object", (P, 1, TAX, 0), 4.2),
    ("periods not a list", (P,), {}),
    ("order missing", ("order",), DROP),
]


def json_path(path: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)


@pytest.mark.parametrize(("path", "value"), [c[1:] for c in ALONE], ids=[c[0] for c in ALONE])
def test_every_rule_fails_alone(path: tuple[str | int, ...], value: object) -> None:
    body = cart()
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    if value is DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    problems = check_pricing(body)
    assert paths(problems) == [json_path(path)], [p.line() for p in problems]
    assert blocking(problems)


def test_a_period_given_twice_is_refused() -> None:
    body = cart()
    body[P].append(copy.deepcopy(body[P][1]))
    assert paths(check_pricing(body)) == ["$.periodPricingDetails[2].period"]


def test_a_coupon_without_discount_is_refused() -> None:
    body = cart(oneOffPriceDiscount=0, totalAmountToBePaidImmediately=126)
    assert paths(check_pricing(body)) == ["$.oneOffPriceCouponCode"]


def test_a_body_that_is_not_an_object() -> None:
    assert paths(check_pricing([1, 2])) == ["$"]


def test_every_problem_is_reported_at_once() -> None:
    body = cart(currency="USD", shippingCost=-1, oneOffPriceCouponCode="")
    assert paths(check_pricing(body)) == [
        "$.currency",
        "$.shippingCost",
        "$.oneOffPriceCouponCode",
    ]


@pytest.mark.parametrize("taxes", ["absent", None])
def test_a_period_without_its_optional_tax_lines_is_a_warning_only(taxes: object) -> None:
    # The document makes taxAmountsPerTaxRate optional: without it the tax is not known.
    body = cart()
    one_off = body["periodPricingDetails"][0]
    if taxes == "absent":
        del one_off["taxAmountsPerTaxRate"]
    else:
        one_off["taxAmountsPerTaxRate"] = taxes
    problems = check_pricing(body)
    assert not blocking(problems)
    assert [(p.path, p.blocking) for p in problems] == [
        ("$.periodPricingDetails[0].includingTax", False)
    ]


def test_an_unusual_yearly_revenue_is_a_warning_only() -> None:
    problems = check_pricing(cart(totalRevenueForFullYear=1))
    assert [p.path for p in problems] == ["$.totalRevenueForFullYear"]
    assert not blocking(problems)
    assert problems[0].line().startswith("warning: $.totalRevenueForFullYear")


def test_a_package_that_is_not_the_sum_of_its_products_is_a_warning_only() -> None:
    body = copy.deepcopy(EXAMPLE)
    package = body["order"]["shoppingCart"]["salesPackages"][0]
    package["products"][0]["periodPricingDetails"][0]["excludingTax"] = 10
    package["products"][0]["periodPricingDetails"][0]["includingTax"] = 10
    problems = check_pricing(body)
    assert [p.path for p in problems] == [
        "$.order.shoppingCart.salesPackages[0].periodPricingDetails"
    ]
    assert not blocking(problems)


# --- random consistent carts ------------------------------------------------------------------

cents = st.integers(min_value=0, max_value=10**8)


def _taxed(rate: float) -> st.SearchStrategy[tuple[float, int]]:
    """A rate and the part of a period's excludingTax it taxes (cents): any at 0 %, else
    multiples of 2 EUR, whose tax at each rate is whole cents (summed, still exact)."""
    base = (
        cents if rate == 0 else st.integers(min_value=0, max_value=5 * 10**5).map(lambda n: n * 200)
    )
    return st.tuples(st.just(rate), base)


def _period_line(taxed: tuple[tuple[float, int], ...]) -> tuple[int, list[tuple[float, int]]]:
    """(excludingTax, [(taxRate, taxAmount)]) in cents: each rate's amount its base x rate %."""
    return sum(b for _, b in taxed), [(r, int(b * r) // 100) for r, b in taxed]


RATES = [0, 6, 9, 21, 5.5]
tax_rates = st.lists(st.sampled_from(RATES), min_size=1, max_size=3, unique=True)
# Each list of rates' strategy built once, not at every draw (most of the test's time was
# building and validating them again).
_TAXED_BY_RATES = {
    rates: st.tuples(*map(_taxed, rates))
    for size in (1, 2, 3)
    for rates in itertools.permutations(RATES, size)
}
period_line = tax_rates.flatmap(lambda rs: _TAXED_BY_RATES[tuple(rs)]).map(_period_line)
product = st.dictionaries(st.sampled_from(["OneOff", "Monthly", "Yearly"]), period_line, min_size=1)


def _details(lines: dict[str, tuple[int, list[tuple[float, int]]]]) -> list[dict[str, Any]]:
    out = []
    for period, (excluding, taxes) in lines.items():
        out.append(
            {
                "period": period,
                "excludingTax": excluding / 100,
                "singleExcludingTax": excluding / 100,
                "includingTax": (excluding + sum(t for _, t in taxes)) / 100,
                "taxAmountsPerTaxRate": [{"taxRate": r, "taxAmount": t / 100} for r, t in taxes],
            }
        )
    return out


def _summed(
    parts: list[dict[str, tuple[int, list[tuple[float, int]]]]],
) -> dict[str, tuple[int, list[tuple[float, int]]]]:
    total: dict[str, tuple[int, list[tuple[float, int]]]] = {}
    for part in parts:
        for period, (excluding, taxes) in part.items():
            had, had_taxes = total.get(period, (0, []))
            merged = dict(had_taxes)  # one line per rate, as in a cart (a rate twice warns)
            for rate, tax in taxes:
                merged[rate] = merged.get(rate, 0) + tax
            total[period] = (had + excluding, list(merged.items()))
    return total


# 60 carts: every rule the check applies is met by most carts drawn (several packages and
# periods, taxes or none, a discount or none); 200 took 10 s of a loaded run.
@settings(max_examples=60, deadline=None)
@given(
    packages=st.lists(st.lists(product, min_size=1, max_size=3), min_size=1, max_size=3),
    shipping=cents,
    discount_share=st.floats(min_value=0, max_value=1),
    with_tax=st.booleans(),
)
def test_a_consistent_cart_from_random_lines_always_passes(
    packages: list[list[dict[str, tuple[int, list[tuple[float, int]]]]]],
    shipping: int,
    discount_share: float,
    with_tax: bool,
) -> None:
    package_sums = [_summed(products) for products in packages]
    top = _summed(package_sums)

    def including(period: str) -> int:
        excluding, taxes = top.get(period, (0, []))
        return excluding + sum(t for _, t in taxes)

    def side(period: str) -> int:
        return including(period) if with_tax else top.get(period, (0, []))[0]

    one_off = including("OneOff")
    discount = int((one_off + shipping) * discount_share)
    body = {
        "currency": "EUR",
        "shippingCost": shipping / 100,
        "oneOffPriceCouponCode": "CODE" if discount else "",
        "oneOffPriceDiscount": discount / 100,
        "totalAmountToBePaidImmediately": (one_off + shipping - discount) / 100,
        "totalRevenueForFullYear": (side("OneOff") + 12 * side("Monthly") + side("Yearly")) / 100,
        "periodPricingDetails": _details(top),
        "order": {
            "shoppingCart": {
                "salesPackages": [
                    {
                        "periodPricingDetails": _details(package_sum),
                        "products": [{"periodPricingDetails": _details(p)} for p in products],
                    }
                    for products, package_sum in zip(packages, package_sums, strict=True)
                ]
            }
        },
    }
    assert check_pricing(body) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b.update(Currency="USD"), "$.Currency"),
        (lambda b: b.update(ShippingCost=500), "$.ShippingCost"),
        # Dotless i: casefold() keeps it apart from `i`, Java's equalsIgnoreCase does not.
        (lambda b: b.update({"shıppingCost": 500}), "$.shıppingCost"),
        (lambda b: b.update({"sh\u0130ppingCost": 500}), "$.sh\u0130ppingCost"),
        (
            lambda b: b["periodPricingDetails"][1].update(IncludingTax=1),
            "$.periodPricingDetails[1].IncludingTax",
        ),
        (
            lambda b: b["periodPricingDetails"][0]["taxAmountsPerTaxRate"][0].update(TAXRATE=9),
            "$.periodPricingDetails[0].taxAmountsPerTaxRate[0].TAXRATE",
        ),
    ],
)
def test_a_key_differing_from_a_checked_one_only_in_case_blocks(change: Any, path: str) -> None:
    # CCV's JSON reader may ignore case: it could read the prices the check never saw.
    body = cart()
    change(body)
    problems = check_pricing(body)
    assert paths(problems) == [path]
    assert "only in case" in problems[0].message
