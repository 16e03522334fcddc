"""The CCV pricing check below the body's top: a cart's pricing fields each by its own rules, and
every price of its sales packages and their products.

The fields a cart shares with a pricing body (`currency`, `shippingCost`, ...) are checked one
by one when not null: a configurator leaves them null, or at its defaults (`"EUR"`, `""`, `0`,
`[]`), until the prices are set, and a field given alone (`"USD"`, a negative shipping cost)
would reach CCV as it is. Every `periodPricingDetails` list gets the per-period rules
(pricing_periods.py), blocking at its full JSON path; whether a package is the sum of its
products (and the cart the sum of its packages) the document does not say: warnings only."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal

from .pricing_periods import PERIODS, period_list
from .pricing_values import Problem, exact_number, found_kind, money, read_amount, shown

CURRENCIES = ("EUR",)
# The amounts of a cart (and of a pricing body's top), and those of a product.
CART_AMOUNTS = (
    "shippingCost",
    "oneOffPriceDiscount",
    "totalAmountToBePaidImmediately",
    "totalRevenueForFullYear",
)
PRODUCT_AMOUNTS = ("toBePaidImmediately", "totalRevenueForFullYear")
_ZERO = Decimal(0)


def currency_problem(item: Mapping[str, object], at: str) -> Problem | None:
    """The problem of `item`'s currency (the document's enum: EUR), if any."""
    currency = item.get("currency")
    if currency in CURRENCIES:
        return None
    return Problem(f"{at}.currency", "currency must be EUR", '"EUR"', shown(currency))


def coupon_problems(
    item: Mapping[str, object], discount: Decimal | None, at: str
) -> Iterator[Problem]:
    """The coupon code is a string, given exactly when there is a discount (when it is known)."""
    code = item.get("oneOffPriceCouponCode")
    path = f"{at}.oneOffPriceCouponCode"
    if not isinstance(code, str):
        yield Problem(
            path,
            'a string is required ("" when there is no coupon)',
            "a string",
            found_kind(item, "oneOffPriceCouponCode"),
        )
        return
    if discount is None:
        return
    if discount > 0 and not code.strip():
        yield Problem(path, "a discount needs its coupon code", "a code", '""')
    elif discount == 0 and code.strip():
        yield Problem(path, 'without a discount the coupon code must be ""', '""', shown(code))


def given_fields(cart: Mapping[str, object], at: str) -> Iterator[Problem]:
    """Each pricing field of a cart that is not null, by its own rules; the coupon code against
    the discount when both are given. Rules over several fields (the total to pay, the yearly
    revenue) need the cart's prices whole: the top of a pricing body has them checked."""
    if cart.get("currency") is not None:
        problem = currency_problem(cart, at)
        if problem is not None:
            yield problem
    discount: Decimal | None = None
    for name in CART_AMOUNTS:
        if cart.get(name) is None:
            continue
        problem, value = read_amount(cart, name, f"{at}.{name}")
        if problem is not None:
            yield problem
        elif name == "oneOffPriceDiscount":
            discount = value
    if cart.get("oneOffPriceCouponCode") is not None:
        yield from coupon_problems(cart, discount, at)


def order_problems(order: object, at: str, top: Mapping[str, Decimal] | None) -> Iterator[Problem]:
    """Every price of `order.shoppingCart` (`at` is the order's path): its own pricing fields
    when not null, its periods, each sales package's and each product's periods, a product's
    amounts. `top`: period -> includingTax of the prices above the cart (a pricing body's own,
    when sound), which its packages are compared with (a warning); None when there are none."""
    cart = order.get("shoppingCart") if isinstance(order, Mapping) else None
    if not isinstance(cart, Mapping):
        return
    at = f"{at}.shoppingCart"
    yield from given_fields(cart, at)
    yield from _nested_periods(cart, at)
    packages = cart.get("salesPackages")
    if not isinstance(packages, list):
        return
    for i, package in enumerate(packages):
        if isinstance(package, Mapping):
            yield from _package(package, f"{at}.salesPackages[{i}]")
    yield from _package_sums(packages, at, top)


def _nested_periods(item: Mapping[str, object], at: str) -> Iterator[Problem]:
    """The blocking per-period rules of a cart's, package's or product's periods. Their
    warnings (a tax line off its base x rate, a rate twice, no tax lines) are said of the
    body's own periods alone: one tax a cent off would else be said for the cart, the package
    and the product, and a product may leave its optional tax lines out."""
    problems, _ = period_list(item, at, {}, {}, required=False)
    yield from (p for p in problems if p.blocking)


def _package(package: Mapping[str, object], at: str) -> Iterator[Problem]:
    yield from _nested_periods(package, at)
    products = package.get("products")
    for j, product in enumerate(products if isinstance(products, list) else ()):
        if not isinstance(product, Mapping):
            continue
        pat = f"{at}.products[{j}]"
        yield from _nested_periods(product, pat)
        for name in PRODUCT_AMOUNTS:
            if product.get(name) is not None:
                problem, _ = read_amount(product, name, f"{pat}.{name}")
                if problem is not None:
                    yield problem


def rounded_parts(cart: object) -> dict[str, int]:
    """Return period -> how many products' periods the cart's may be the sum of (the document:
    "the sum of your pricing details that are in your order"), each product's tax rounded to
    the cent on its own. Read leniently: what is malformed counts nothing here."""
    packages = cart.get("salesPackages") if isinstance(cart, Mapping) else None
    parts: dict[str, int] = {}
    for package in packages if isinstance(packages, list) else ():
        products = package.get("products") if isinstance(package, Mapping) else None
        for product in products if isinstance(products, list) else ():
            details = product.get("periodPricingDetails") if isinstance(product, Mapping) else None
            for item in details if isinstance(details, list) else ():
                if isinstance(item, Mapping) and isinstance(item.get("period"), str):
                    parts[str(item["period"])] = parts.get(str(item["period"]), 0) + 1
    return parts


def _package_sums(
    packages: list[object], at: str, top: Mapping[str, Decimal] | None
) -> Iterator[Problem]:
    """Warn where a package is not the sum of its products or the cart not the sum of its
    packages (the document does not say they must be)."""
    if not packages:
        return
    cart_sum: dict[str, Decimal] | None = {}
    for i, package in enumerate(packages):
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
                f"{at}.salesPackages[{i}].periodPricingDetails",
                "the package's includingTax per period is not the sum of its products'",
                _periods_text(product_sum),
                _periods_text(own),
                blocking=False,
            )
    if cart_sum is not None and top and _nonzero(cart_sum) != _nonzero(top):
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
