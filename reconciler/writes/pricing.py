"""The CCV pricing check: the rules ccv-set-shopping-cart-pricing.txt implies, as one pure function.

CCV invoices the partner for wrong prices, so a SetShoppingCardPricingDetails body is checked
before it is sent. Every amount is compared as an exact decimal (the shortest text of the JSON
number), so "to the cent" means exactly equal once each amount is known to be in cents.

Rules the document states or implies are *blocking*. What it leaves open is only *warnings*:
how `totalRevenueForFullYear` is made, whether a sales package's prices are the sum of its
products' (and the cart's the sum of its packages'), the tax of a period given without its
optional `taxAmountsPerTaxRate`, a period's one tax line whose amount is not its base x rate, and
a tax rate listed twice in a period.

This module holds the rules of the body's top (its prices whole); the per-period rules are in
pricing_periods.py, those of the order's cart, packages and products in pricing_cart.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal

from .pricing_cart import (
    CART_AMOUNTS,
    coupon_problems,
    currency_problem,
    order_problems,
    rounded_parts,
)
from .pricing_periods import period_list
from .pricing_values import Problem, case_twins, found_kind, kind, money, read_amount

_ZERO = Decimal(0)


def blocking(problems: Sequence[Problem]) -> bool:
    """Return whether any problem forbids sending the body to CCV."""
    return any(p.blocking for p in problems)


def check_pricing(body: object) -> list[Problem]:
    """Return every problem of a SetShoppingCardPricingDetails body, blocking ones first."""
    problems = list(_check(body))
    return sorted(problems, key=lambda p: not p.blocking)


def check_order(order: object, at: str) -> list[Problem]:
    """Return every problem of the prices an order (at path `at`) holds when no prices are
    given above it (a submit's cart without prices of its own to check whole), blocking first:
    each pricing field of its cart that is not null, every period of its cart, packages and
    products, and any key differing only in case from one the check reads."""
    problems = [*case_twins(order, at), *order_problems(order, at, None)]
    return sorted(problems, key=lambda p: not p.blocking)


def _check(body: object) -> Iterator[Problem]:
    if not isinstance(body, Mapping):
        yield Problem("$", "the body must be a JSON object", found=kind(body))
        return
    yield from case_twins(body)
    problem = currency_problem(body, "$")
    if problem is not None:
        yield problem
    amounts: dict[str, Decimal] = {}
    for name in CART_AMOUNTS:
        problem, value = read_amount(body, name, f"$.{name}")
        if problem is not None:
            yield problem
        elif value is not None:
            amounts[name] = value
    yield from coupon_problems(body, amounts.get("oneOffPriceDiscount"), "$")
    order = body.get("order")
    if not isinstance(order, Mapping):
        yield Problem(
            "$.order", "the order object is required", "an object", found_kind(body, "order")
        )

    periods: dict[str, tuple[Decimal, Decimal]] = {}
    cart = order.get("shoppingCart") if isinstance(order, Mapping) else None
    problems, periods_ok = period_list(body, "$", periods, rounded_parts(cart), required=True)
    yield from problems

    total = amounts.get("totalAmountToBePaidImmediately")
    shipping = amounts.get("shippingCost")
    discount = amounts.get("oneOffPriceDiscount")
    # A rule over several fields is checked only when each of them is sound: one wrong field is
    # one problem, not a cascade.
    if periods_ok and shipping is not None and discount is not None:
        most = periods.get("OneOff", (_ZERO, _ZERO))[1] + shipping
        if discount > most:
            # The total it would leave is below 0, itself refused: say what is wrong instead.
            yield Problem(
                "$.oneOffPriceDiscount",
                "the discount exceeds the one-off total plus shipping"
                " (OneOff includingTax + shippingCost)",
                f"<= {money(most)}",
                money(discount),
            )
        elif total is not None and most - discount != total:
            yield Problem(
                "$.totalAmountToBePaidImmediately",
                "must be OneOff includingTax + shippingCost - oneOffPriceDiscount",
                money(most - discount),
                money(total),
            )
    revenue = amounts.get("totalRevenueForFullYear")
    if periods_ok and revenue is not None:
        yield from _revenue(revenue, periods)
    top = {period: values[1] for period, values in periods.items()} if periods_ok else None
    yield from order_problems(order, "$.order", top)


def _revenue(revenue: Decimal, periods: Mapping[str, tuple[Decimal, Decimal]]) -> Iterator[Problem]:
    """Warn when totalRevenueForFullYear matches no plausible recipe (the document is silent)."""
    recipes = set()
    for side in (0, 1):  # excluding tax, including tax
        one_off = periods.get("OneOff", (_ZERO, _ZERO))[side]
        monthly = periods.get("Monthly", (_ZERO, _ZERO))[side]
        yearly = periods.get("Yearly", (_ZERO, _ZERO))[side]
        recipes.add(one_off + 12 * monthly + yearly)
        recipes.add(12 * monthly + yearly)
    if revenue not in recipes:
        likely = sorted(recipes)[-1]
        yield Problem(
            "$.totalRevenueForFullYear",
            "matches no usual recipe (OneOff + 12 x Monthly + Yearly, with or without tax);"
            " the document does not say how it is made",
            money(likely),
            money(revenue),
            blocking=False,
        )
