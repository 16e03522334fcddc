"""The CCV pricing check: the rules ccv-set-shopping-cart-pricing.txt implies, as one pure function.

CCV invoices the partner for wrong prices, so a SetShoppingCardPricingDetails body is checked
before it is sent. Every amount is compared as an exact decimal (the shortest text of the JSON
number), so "to the cent" means exactly equal once each amount is known to be in cents.

Rules the document states or implies are *blocking*. What it leaves open is only *warnings*:
how `totalRevenueForFullYear` is made, whether a sales package's prices are the sum of its
products' (and the cart's the sum of its packages'), the tax of a period given without its
optional `taxAmountsPerTaxRate`, a period's one tax line whose amount is not its base x rate, and
a tax rate listed twice in a period.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal

from .pricing_values import (
    Problem,
    case_twins,
    exact_number,
    found_kind,
    kind,
    money,
    read_amount,
    rounded_parts,
    shown,
    tax_rate_problem,
)

CURRENCIES = ("EUR",)
PERIODS = ("OneOff", "Monthly", "Yearly")
# The document's table spells it `exludingTax`, its example `excludingTax`; both are accepted.
EXCLUDING = ("excludingTax", "exludingTax")
SINGLE_EXCLUDING = ("singleExcludingTax", "singleExludingTax")
TOP_AMOUNTS = (
    "shippingCost",
    "oneOffPriceDiscount",
    "totalAmountToBePaidImmediately",
    "totalRevenueForFullYear",
)
_ZERO = Decimal(0)
_CENT = Decimal("0.01")


def blocking(problems: Sequence[Problem]) -> bool:
    """Return whether any problem forbids sending the body to CCV."""
    return any(p.blocking for p in problems)


def check_pricing(body: object) -> list[Problem]:
    """Return every problem of a SetShoppingCardPricingDetails body, blocking ones first."""
    problems = list(_check(body))
    return sorted(problems, key=lambda p: not p.blocking)


def _check(body: object) -> Iterator[Problem]:
    if not isinstance(body, Mapping):
        yield Problem("$", "the body must be a JSON object", found=kind(body))
        return
    yield from case_twins(body)
    currency = body.get("currency")
    if currency not in CURRENCIES:
        yield Problem("$.currency", "currency must be EUR", '"EUR"', shown(currency))
    amounts: dict[str, Decimal] = {}
    for name in TOP_AMOUNTS:
        problem, value = read_amount(body, name, f"$.{name}")
        if problem is not None:
            yield problem
        elif value is not None:
            amounts[name] = value
    yield from _coupon(body, amounts.get("oneOffPriceDiscount"))
    if not isinstance(body.get("order"), Mapping):
        yield Problem(
            "$.order", "the order object is required", "an object", found_kind(body, "order")
        )

    periods: dict[str, tuple[Decimal, Decimal]] = {}
    details = body.get("periodPricingDetails")
    periods_ok = isinstance(details, list)
    if not isinstance(details, list):
        yield Problem(
            "$.periodPricingDetails",
            "a list of periods is required",
            "a list",
            found_kind(body, "periodPricingDetails"),
        )
    else:
        parts = rounded_parts(body)
        for problem in _periods(details, "$.periodPricingDetails", periods, parts):
            periods_ok = periods_ok and not problem.blocking
            yield problem

    total = amounts.get("totalAmountToBePaidImmediately")
    shipping = amounts.get("shippingCost")
    discount = amounts.get("oneOffPriceDiscount")
    # A rule over several fields is checked only when each of them is sound: one wrong field is
    # one problem, not a cascade.
    if periods_ok and total is not None and shipping is not None and discount is not None:
        expected = periods.get("OneOff", (_ZERO, _ZERO))[1] + shipping - discount
        if expected != total:
            yield Problem(
                "$.totalAmountToBePaidImmediately",
                "must be OneOff includingTax + shippingCost - oneOffPriceDiscount",
                money(expected),
                money(total),
            )
    revenue = amounts.get("totalRevenueForFullYear")
    if periods_ok and revenue is not None:
        yield from _revenue(revenue, periods)
    if periods_ok:
        yield from _package_sums(body, periods)


def _coupon(body: Mapping[str, object], discount: Decimal | None) -> Iterator[Problem]:
    code = body.get("oneOffPriceCouponCode")
    path = "$.oneOffPriceCouponCode"
    if not isinstance(code, str):
        yield Problem(
            path,
            'a string is required ("" when there is no coupon)',
            "a string",
            found_kind(body, "oneOffPriceCouponCode"),
        )
        return
    if discount is None:
        return
    if discount > 0 and not code.strip():
        yield Problem(path, "a discount needs its coupon code", "a code", '""')
    elif discount == 0 and code.strip():
        yield Problem(path, 'without a discount the coupon code must be ""', '""', shown(code))


def _periods(
    details: list[object],
    path: str,
    out: dict[str, tuple[Decimal, Decimal]],
    parts: Mapping[str, int],
) -> Iterator[Problem]:
    """Check one periodPricingDetails list; fill `out` with period -> (excluding, including).
    `parts`: period -> how many amounts rounded on their own its tax may sum (`rounded_parts`)."""
    seen: set[str] = set()
    for i, item in enumerate(details):
        at = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            yield Problem(at, "a period must be an object", "an object", kind(item))
            continue
        period = item.get("period")
        if not isinstance(period, str) or period not in PERIODS:
            yield Problem(f"{at}.period", "unknown period", " | ".join(PERIODS), shown(period))
            continue
        if period in seen:
            yield Problem(f"{at}.period", f"period {period} is given twice", "once", "twice")
            continue
        seen.add(period)
        problems, values = _one_period(item, at, parts.get(period, 1))
        yield from problems
        if values is not None:
            out[period] = values


def _spelled(item: Mapping[str, object], names: tuple[str, ...], at: str) -> Iterator[Problem]:
    """Problems with a field that has two accepted spellings (both given and different)."""
    present = [n for n in names if n in item]
    if len(present) == 2 and exact_number(item[names[0]]) != exact_number(item[names[1]]):
        yield Problem(
            f"{at}.{names[1]}",
            f"{names[0]} and {names[1]} are both given and differ",
            shown(item[names[0]]),
            shown(item[names[1]]),
        )


def _one_period(
    item: Mapping[str, object], at: str, parts: int
) -> tuple[list[Problem], tuple[Decimal, Decimal] | None]:
    problems: list[Problem] = []
    problems.extend(_spelled(item, EXCLUDING, at))
    problems.extend(_spelled(item, SINGLE_EXCLUDING, at))
    excluding_name = next((n for n in EXCLUDING if n in item), EXCLUDING[0])
    problem, excluding = read_amount(item, excluding_name, f"{at}.{excluding_name}")
    if problem is not None:
        problems.append(problem)
    single_name = next((n for n in SINGLE_EXCLUDING if n in item), SINGLE_EXCLUDING[0])
    problem, _ = read_amount(item, single_name, f"{at}.{single_name}")
    if problem is not None:
        problems.append(problem)
    problem, including = read_amount(item, "includingTax", f"{at}.includingTax")
    if problem is not None:
        problems.append(problem)
    taxes = item.get("taxAmountsPerTaxRate")
    tax_sum: Decimal | None = _ZERO
    lines: list[tuple[str, Decimal, Decimal]] = []  # each sound line's (path, rate, amount)
    if taxes is None:
        pass
    elif not isinstance(taxes, list):
        problems.append(
            Problem(f"{at}.taxAmountsPerTaxRate", "must be a list", "a list", kind(taxes))
        )
        tax_sum = None
    else:
        for j, tax in enumerate(taxes):
            tat = f"{at}.taxAmountsPerTaxRate[{j}]"
            if not isinstance(tax, Mapping):
                problems.append(
                    Problem(tat, "a tax line must be an object", "an object", kind(tax))
                )
                tax_sum = None
                continue
            rate_problem = tax_rate_problem(tax.get("taxRate"), f"{tat}.taxRate")
            if rate_problem is not None:
                problems.append(rate_problem)
            problem, amount = read_amount(tax, "taxAmount", f"{tat}.taxAmount")
            if problem is not None:
                problems.append(problem)
                tax_sum = None
            elif tax_sum is not None and amount is not None:
                tax_sum += amount
            rate = exact_number(tax.get("taxRate"))
            if rate_problem is None and rate is not None and amount is not None:
                lines.append((tat, rate, amount))
    problems.extend(_tax_lines(lines, excluding, excluding_name, parts))
    if excluding is None or including is None:
        return problems, None
    if taxes is None and excluding != including:
        # The tax lines are optional in the document: without them the tax is not known.
        problems.append(
            Problem(
                f"{at}.includingTax",
                "differs from "
                f"{excluding_name} and no taxAmountsPerTaxRate says by what (the document makes "
                "the tax lines optional)",
                money(excluding),
                money(including),
                blocking=False,
            )
        )
    elif tax_sum is not None and excluding + tax_sum != including:
        problems.append(
            Problem(
                f"{at}.includingTax",
                f"must be {excluding_name} + the sum of taxAmount",
                money(excluding + tax_sum),
                money(including),
            )
        )
    return problems, (excluding, including)


def _tax_lines(
    lines: Sequence[tuple[str, Decimal, Decimal]],
    excluding: Decimal | None,
    excluding_name: str,
    parts: int,
) -> Iterator[Problem]:
    """Warn of a period's tax rate listed twice, and of a period's one tax line whose taxAmount
    is not its excludingTax x taxRate % to the cent (any rounding of it to the cent is
    accepted, a cent for each of the `parts` it may be the sum of: the products' taxes, each
    rounded on its own); with several rates, the part of the amount each one taxes is not
    given. Warnings only: the document says what the fields are ("The tax rate, e.g. 6 or
    21"; "The amount of tax"), not that CCV checks them."""
    first: dict[Decimal, str] = {}
    for path, rate, _ in lines:
        if rate in first:
            yield Problem(
                f"{path}.taxRate",
                f"the tax rate is listed twice in one period (also at {first[rate]})",
                "each rate once",
                str(rate),
                blocking=False,
            )
        first.setdefault(rate, path)
    if excluding is None or len(lines) != 1:
        return
    path, rate, amount = lines[0]
    exact = excluding * rate / 100
    if abs(amount - exact) >= _CENT * max(parts, 1):
        yield Problem(
            f"{path}.taxAmount",
            f"is not {excluding_name} x taxRate % to the cent",
            money(exact.quantize(_CENT, ROUND_HALF_UP)),
            money(amount),
            blocking=False,
        )


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


def _package_sums(
    body: Mapping[str, object], periods: Mapping[str, tuple[Decimal, Decimal]]
) -> Iterator[Problem]:
    """Warn where a package is not the sum of its products or the cart not the sum of its
    packages (the document does not say they must be)."""
    order = body.get("order")
    cart = order.get("shoppingCart") if isinstance(order, Mapping) else None
    packages = cart.get("salesPackages") if isinstance(cart, Mapping) else None
    if not isinstance(packages, list) or not packages:
        return
    cart_sum: dict[str, Decimal] | None = {}
    for i, package in enumerate(packages):
        at = f"$.order.shoppingCart.salesPackages[{i}]"
        own = (
            _including_by_period(package.get("periodPricingDetails"))
            if isinstance(package, Mapping)
            else None
        )
        if own is None:
            cart_sum = None
            continue
        if cart_sum is not None:
            for period, value in own.items():
                cart_sum[period] = cart_sum.get(period, _ZERO) + value
        products = package.get("products") if isinstance(package, Mapping) else None
        if not isinstance(products, list) or not products:
            continue
        product_sum: dict[str, Decimal] | None = {}
        for product in products:
            lines = (
                _including_by_period(product.get("periodPricingDetails"))
                if isinstance(product, Mapping)
                else None
            )
            if lines is None or product_sum is None:
                product_sum = None
                break
            for period, value in lines.items():
                product_sum[period] = product_sum.get(period, _ZERO) + value
        if product_sum is not None and _nonzero(product_sum) != _nonzero(own):
            yield Problem(
                f"{at}.periodPricingDetails",
                "the package's includingTax per period is not the sum of its products'",
                _periods_text(product_sum),
                _periods_text(own),
                blocking=False,
            )
    top = {period: values[1] for period, values in periods.items()}
    if cart_sum is not None and periods and _nonzero(cart_sum) != _nonzero(top):
        yield Problem(
            "$.periodPricingDetails",
            "the includingTax per period is not the sum of the sales packages'",
            _periods_text(cart_sum),
            _periods_text(top),
            blocking=False,
        )


def _including_by_period(details: object) -> dict[str, Decimal] | None:
    """Return period -> includingTax of a well-formed list, else None (checked elsewhere)."""
    if not isinstance(details, list):
        return None
    out: dict[str, Decimal] = {}
    for item in details:
        if not isinstance(item, Mapping) or item.get("period") not in PERIODS:
            return None
        value = exact_number(item.get("includingTax"))
        if value is None:
            return None
        period = str(item["period"])
        out[period] = out.get(period, _ZERO) + value
    return out


def _nonzero(values: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {k: v for k, v in values.items() if v != 0}


def _periods_text(values: Mapping[str, Decimal]) -> str:
    shown = _nonzero(values)
    if not shown:
        return "0 in every period"
    return ", ".join(f"{p} {money(shown[p])}" for p in PERIODS if p in shown)
