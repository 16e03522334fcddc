"""The simulator's CCV write calls: what a submit-order and a pricing body must hold to get past
CCV's own 400 ("missing/invalid values"), as the provider documents describe the fields.

CCV checks shapes, not sums: a pricing body whose amounts do not add up is accepted (and the
partner invoiced for it), so the simulator accepts it too. Checking sums is reconciler's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .model import check_notify_on

PRICING_PATH = "/api/ordercompletion/reseller/orderconfigurator/SetShoppingCardPricingDetails"
PRICING_SET = "Shopping cart pricing details set"

_PERIODS = ("OneOff", "Monthly", "Yearly")
_TOP_AMOUNTS = (
    "shippingCost",
    "oneOffPriceDiscount",
    "totalAmountToBePaidImmediately",
    "totalRevenueForFullYear",
)
# The document's table spells these `exludingTax` / `singleExludingTax`, its example
# `excludingTax` / `singleExcludingTax`; which one CCV reads is unknown, so either will do.
_PERIOD_AMOUNTS = (
    ("excludingTax", "exludingTax"),
    ("singleExcludingTax", "singleExludingTax"),
    ("includingTax",),
)


def parse_submit(body: object) -> tuple[str | None, str | None, list[str] | None]:
    """Return (externalReference, notificationUrl, notifyOnStatus) of a submit-order body."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    if not isinstance(body.get("order"), dict):
        raise ValueError("order must be an object")
    if not isinstance(body.get("notifyCustomerByEmail"), bool):
        raise ValueError("notifyCustomerByEmail is required and must be a boolean")
    ref = body.get("externalReference")
    if ref is not None and not isinstance(ref, str):
        raise ValueError("externalReference must be a string")
    info = body.get("statusNotificationInformation")
    if info is None:
        return ref, None, None
    if not isinstance(info, dict):
        raise ValueError("statusNotificationInformation must be an object")
    url = info.get("notificationUrl")
    if url is not None and not isinstance(url, str):
        raise ValueError("notificationUrl must be a string")
    notify_on = info.get("notifyOnStatus")
    if notify_on is not None:
        check_notify_on(notify_on)
    return ref, url, notify_on


def check_pricing_fields(body: object) -> None:
    """Raise ValueError naming the first missing or invalid field of a pricing body."""
    if not isinstance(body, Mapping):
        raise ValueError("body must be a JSON object")
    if body.get("currency") != "EUR":
        raise ValueError("currency is required and must be EUR")
    for name in _TOP_AMOUNTS:
        _number(body, name, name)
    if not isinstance(body.get("oneOffPriceCouponCode"), str):
        raise ValueError('oneOffPriceCouponCode is required, a string ("" without a coupon)')
    if not isinstance(body.get("order"), Mapping):
        raise ValueError("order is required and must be an object")
    details = body.get("periodPricingDetails")
    if not isinstance(details, list):
        raise ValueError("periodPricingDetails is required and must be a list")
    for i, detail in enumerate(details):
        _check_period(detail, f"periodPricingDetails[{i}]")


def _check_period(detail: object, where: str) -> None:
    if not isinstance(detail, Mapping):
        raise ValueError(f"{where} must be an object")
    if detail.get("period") not in _PERIODS:
        raise ValueError(f"{where}.period must be one of {', '.join(_PERIODS)}")
    for spellings in _PERIOD_AMOUNTS:
        name = next((n for n in spellings if n in detail), spellings[0])
        _number(detail, name, f"{where}.{name}")
    taxes = detail.get("taxAmountsPerTaxRate")
    if taxes is None:
        return
    if not isinstance(taxes, list):
        raise ValueError(f"{where}.taxAmountsPerTaxRate must be a list")
    for j, tax in enumerate(taxes):
        if not isinstance(tax, Mapping):
            raise ValueError(f"{where}.taxAmountsPerTaxRate[{j}] must be an object")
        for name in ("taxRate", "taxAmount"):
            _number(tax, name, f"{where}.taxAmountsPerTaxRate[{j}].{name}")


def _number(doc: Mapping[str, object], name: str, where: str) -> None:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} is required and must be a number")
