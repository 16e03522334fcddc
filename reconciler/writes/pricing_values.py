"""A pricing body's values read exactly, and a wrong one shown in a problem: a JSON number as the
decimal it was written as, amounts in whole cents, tax rates as percentages."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from ..key_fold import fold
from ..redact import SecretForms, mask

_CENT = Decimal("0.01")
# No cart costs this much; below it every amount and sum stays exact in Decimal's 28 digits.
MAX_AMOUNT = Decimal(10) ** 15


@dataclass(frozen=True, slots=True)
class Problem:
    """One rule a pricing body breaks, at a JSON path; warnings do not block the call."""

    path: str
    message: str
    expected: str | None = None
    found: str | None = None
    blocking: bool = True

    def line(self) -> str:
        """Return the problem as one line: `PATH: MESSAGE (expected E, found F)`."""
        text = f"{self.path}: {self.message}"
        pairs = (("expected", self.expected), ("found", self.found))
        said = [f"{word} {value}" for word, value in pairs if value is not None]
        if said:
            text += f" ({', '.join(said)})"
        return text if self.blocking else f"warning: {text}"

    def masked(self, forms: SecretForms | None) -> Problem:
        """Return the problem with every secret of `forms` (`redact.text_forms`) masked where
        it quotes what was given: a body may hold a secret of the config as a value (the API
        key pasted as `currency`), and the problem would show it to whoever reads the answer."""
        if forms is None:
            return self
        return dataclasses.replace(
            self,
            path=mask(self.path, forms),
            message=mask(self.message, forms),
            expected=None if self.expected is None else mask(self.expected, forms),
            found=None if self.found is None else mask(self.found, forms),
        )

    def to_json(self) -> dict[str, object]:
        """Return the problem as a JSON object (the API's 422 body lists these)."""
        return {
            "path": self.path,
            "message": self.message,
            "expected": self.expected,
            "found": self.found,
            "blocking": self.blocking,
        }


def read_amount(
    item: Mapping[str, object], name: str, path: str, *, lenient: bool = False
) -> tuple[Problem | None, Decimal | None]:
    """Check that `item[name]` is a finite amount >= 0 in whole cents; return it as a Decimal.
    `lenient` (a sales package's or product's price): only what CCV could not read at all, a
    value that is no JSON number or no finite one, is blocking; a missing, null, too large,
    negative or sub-cent amount is a warning, and a negative or sub-cent one is still returned
    (for the sums): a discount line or a catalogue's unit price may be such, and the document
    sets rules for the body's top only."""
    if name not in item:
        return Problem(
            path, "an amount is required", "a number", "nothing", blocking=not lenient
        ), None
    raw = item[name]
    value = exact_number(raw)
    if value is None:
        if isinstance(raw, float):
            return Problem(path, "the amount must be finite", "a finite number", shown(raw)), None
        unread = raw is not None or not lenient
        return Problem(
            path, "the amount must be a number", "a number", kind(raw), blocking=unread
        ), None
    if abs(value) >= MAX_AMOUNT:
        too_large = Problem(
            path, "the amount is too large", f"< {MAX_AMOUNT:f}", str(value), blocking=not lenient
        )
        return too_large, None
    if value < 0:
        negative = Problem(
            path, "the amount must not be negative", ">= 0", money(value), blocking=not lenient
        )
        return negative, (value if lenient else None)
    if value != value.quantize(_CENT):
        cents = Problem(
            path,
            "the amount must be in whole cents",
            money(value.quantize(_CENT)),
            str(value),
            blocking=not lenient,
        )
        return cents, (value if lenient else None)
    return None, value


def tax_rate_problem(raw: object, path: str, *, lenient: bool = False) -> Problem | None:
    """The problem of a tax rate, if any; `lenient` as for read_amount (null or out of 0..100 a
    warning, a value that is no finite JSON number blocking)."""
    value = exact_number(raw)
    if value is None:
        unread = raw is not None or not lenient
        return Problem(
            path, "the tax rate must be a finite number", "a number", shown(raw), blocking=unread
        )
    if value < 0 or value > 100:
        return Problem(
            path, "the tax rate must be a percentage", "0 to 100", str(value), blocking=not lenient
        )
    return None


def exact_number(raw: object) -> Decimal | None:
    """Return a JSON number as the exact decimal it was written as; None if not a finite one."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    if isinstance(raw, float) and not math.isfinite(raw):
        return None
    # str() of a float is its shortest round-tripping text: the number as JSON wrote it, since
    # strict_json refuses a number whose float is another value (and so would be sent as one).
    return Decimal(str(raw))


def money(value: Decimal) -> str:
    return f"{value:.2f}" if value == value.quantize(_CENT) else str(value)


def found_kind(item: Mapping[str, object], name: str) -> str:
    return kind(item[name]) if name in item else "nothing"


def kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def shown(value: object) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return '"' + shown.encode("unicode_escape").decode("ascii") + '"'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return kind(value)


# Every key the check reads. One that differs from these only in case (`Currency` beside
# `currency`) is read by no rule here, while CCV's JSON reader may ignore case and take it.
CHECKED_KEYS = frozenset(
    {
        "currency",
        "shippingCost",
        "oneOffPriceDiscount",
        "oneOffPriceCouponCode",
        "totalAmountToBePaidImmediately",
        "totalRevenueForFullYear",
        "order",
        "shoppingCart",
        "salesPackages",
        "products",
        "periodPricingDetails",
        "period",
        "includingTax",
        "excludingTax",
        "exludingTax",
        "singleExcludingTax",
        "singleExludingTax",
        "taxAmount",
        "taxAmountsPerTaxRate",
        "taxRate",
        "toBePaidImmediately",
    }
)
_CHECKED_FOLDED: Final[Mapping[str, str]] = {fold(key): key for key in CHECKED_KEYS}


def case_twins(body: object, at: str = "$") -> Iterator[Problem]:
    """A problem for each key, at any depth of `body` (at path `at`), that differs only in case
    from one the check reads: the prices checked would not be the prices CCV reads."""
    stack: list[tuple[object, str]] = [(body, at)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, Mapping):
            yield from key_twins(node, where)
            stack.extend((value, f"{where}.{key}") for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node))


def key_twins(
    node: Mapping[str, object], where: str, among: frozenset[str] = CHECKED_KEYS
) -> Iterator[Problem]:
    """A problem for each key of `node` itself (at path `where`) that differs only in case from
    one of `among`, keys the check reads."""
    for key in node:
        checked = _CHECKED_FOLDED.get(fold(str(key)))
        if checked is not None and checked != key and checked in among:
            yield Problem(
                f"{where}.{key}",
                f"differs from {checked} only in case: CCV may read it, the check does not",
                json.dumps(checked),
                json.dumps(key),
            )
