"""A CCV submit's prices checked before it is recorded or sent: the submit's
`order.shoppingCart` carries the fields of a SetShoppingCardPricingDetails body (`currency`,
`periodPricingDetails`, ...), all null until the prices are set; a cart that carries prices
(its periods' prices or the total to pay) passes the pricing check's blocking rules first
(pricing.py), as a PATCH of them would. Any other cart has each of those fields that is not
null checked on its own, and every period of its packages and products, before it goes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

from ..key_fold import fold
from ..redact import SecretForms
from .pricing import blocking, check_order, check_pricing
from .pricing_values import Problem
from .submit_body import BadSubmission
from .submit_outcome import own_header

# The fields a cart shares with a pricing body (ccv-set-shopping-cart-pricing.txt's example).
PRICING_FIELDS = (
    "currency",
    "shippingCost",
    "oneOffPriceCouponCode",
    "oneOffPriceDiscount",
    "totalAmountToBePaidImmediately",
    "totalRevenueForFullYear",
    "periodPricingDetails",
)
_PERIODS = fold("periodPricingDetails")
_TOTAL = fold("totalAmountToBePaidImmediately")
CART = "$.order.shoppingCart"
REFUSED = "the prices in order.shoppingCart are inconsistent; nothing was recorded or sent to CCV"
# How many warnings the check of the prices gave: on every answer to a body it let through.
WARNINGS_HEADER = "Reconciler-Pricing-Warnings"
# The warnings themselves, on an answer to a submit whose cart was checked (`warning_headers`).
PROBLEMS_HEADER = "Reconciler-Pricing-Problems"
PROBLEMS_HEADER_MAX = 4096


class BadPrices(BadSubmission):
    """A submit whose cart's prices break a blocking rule; `problems` lists them all (warnings
    too), at paths under `$.order.shoppingCart`."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("order.shoppingCart", REFUSED)
        self.problems = problems


def cart_problems(body: Mapping[str, object]) -> list[Problem]:
    """Return the problems of a submit body's cart prices, blocking ones first. A cart that
    carries prices (`_priced`) is checked whole, as a pricing body; any other has each pricing
    field that is not null checked by its own rules (a configurator's defaults pass them), and
    every period of its packages and products."""
    order = body.get("order")
    cart = order.get("shoppingCart") if isinstance(order, Mapping) else None
    if not isinstance(order, Mapping) or not isinstance(cart, Mapping):
        return []
    if not _priced(cart):
        return check_order(order, "$.order")
    document: dict[str, object] = {name: cart[name] for name in PRICING_FIELDS if name in cart}
    # The cart's prices are the document's own; the order keeps the rest of the cart (its
    # packages), so that each price is checked once.
    rest = {key: value for key, value in cart.items() if key not in PRICING_FIELDS}
    document["order"] = {**order, "shoppingCart": rest}
    found: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for problem in check_pricing(document):
        moved = dataclasses.replace(problem, path=_in_cart(problem.path))
        if (moved.path, moved.message) not in seen:
            seen.add((moved.path, moved.message))
            found.append(moved)
    return found


def _priced(cart: Mapping[object, object]) -> bool:
    """Whether a cart carries prices to check whole: its periods' prices (a non-empty
    `periodPricingDetails`) or the total to pay. A configurator may fill the other fields with
    defaults (`"EUR"`, `""`, `0`, `[]`) before any price is set: those alone are no prices to
    add up (each is still checked on its own). A field in another case counts: CCV's JSON
    reader may take it (the check refuses it)."""
    for key, value in cart.items():
        name = fold(str(key))
        if name == _PERIODS and isinstance(value, list) and value:
            return True
        if name == _TOTAL and value is not None:
            return True
    return False


def check_cart(body: Mapping[str, object]) -> list[Problem] | None:
    """Raise BadPrices when the cart's prices break a blocking rule; return its warnings, or
    None when the cart carries no prices to check whole and its fields gave no warning."""
    problems = cart_problems(body)
    if blocking(problems):
        raise BadPrices(problems)
    order = body.get("order")
    cart = order.get("shoppingCart") if isinstance(order, Mapping) else None
    priced = isinstance(cart, Mapping) and _priced(cart)
    return problems if priced or problems else None


def warning_headers(warnings: Sequence[Problem], forms: SecretForms | None) -> dict[str, str]:
    """The headers of an answer to a submit whose cart was checked: WARNINGS_HEADER counts its
    warnings, as a pricing PATCH's answer does; PROBLEMS_HEADER lists them as a refusal's 422
    lists its problems (a JSON array, masked, percent-encoded as the other `Reconciler-`
    headers), as many whole ones as PROBLEMS_HEADER_MAX characters hold (a client refuses a
    longer header; `ccv check-pricing` lists them all)."""
    # The encoding goes character by character: the array's is its pieces' (`[`, each
    # problem's, `, ` between, `]`) put together, so each problem is encoded once and the
    # first that does not fit ends it. A cart may give thousands (one tax rate listed again
    # and again): cutting the whole list one at a time cost seconds to minutes on the loop.
    room = PROBLEMS_HEADER_MAX - len(own_header("[]"))
    between = len(own_header(", "))
    pieces: list[str] = []
    for problem in warnings:
        piece = json.dumps(problem.masked(forms).to_json())
        room -= len(own_header(piece)) + (between if pieces else 0)
        if room < 0:
            break
        pieces.append(piece)
    value = own_header("[" + ", ".join(pieces) + "]")
    return {WARNINGS_HEADER: str(len(warnings)), PROBLEMS_HEADER: value}


def _in_cart(path: str) -> str:
    """A pricing body's path as the submit body's: its top-level fields are the cart's."""
    if path.startswith("$.order"):
        return path
    return CART + path[1:]
