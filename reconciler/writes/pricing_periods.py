"""The per-period rules of the CCV pricing check, for every `periodPricingDetails` list of a
body (the body's own, its cart's, each sales package's and each product's): periods from the
enum, each at most once; per period `includingTax = excludingTax + sum of taxAmount` to the
cent; amounts finite, >= 0, in whole cents. A tax line that does not match its base and rate,
a rate listed twice, and a period without its optional tax lines are warnings only (said of a
pricing body's own periods: pricing_cart.py keeps the blocking problems of the nested ones)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal

from .pricing_values import (
    Problem,
    exact_number,
    kind,
    money,
    read_amount,
    shown,
    tax_rate_problem,
)

PERIODS = ("OneOff", "Monthly", "Yearly")
# The document's table spells it `exludingTax`, its example `excludingTax`; both are accepted.
EXCLUDING = ("excludingTax", "exludingTax")
SINGLE_EXCLUDING = ("singleExcludingTax", "singleExludingTax")
_ZERO = Decimal(0)
_CENT = Decimal("0.01")


def period_list(
    item: Mapping[str, object],
    at: str,
    out: dict[str, tuple[Decimal, Decimal]],
    parts: Mapping[str, int],
    *,
    required: bool,
) -> tuple[list[Problem], bool]:
    """Check `item`'s periodPricingDetails (at `at`, the path of `item`); fill `out` with
    period -> (excluding, including). Return its problems and whether the list is sound (no
    blocking problem). Null or absent is a problem only when `required` (a pricing body's own
    list); a nested cart, package or product may leave it out."""
    path = f"{at}.periodPricingDetails"
    details = item.get("periodPricingDetails")
    if details is None and not required:
        return [], True
    if not isinstance(details, list):
        found = kind(details) if "periodPricingDetails" in item else "nothing"
        return [Problem(path, "a list of periods is required", "a list", found)], False
    problems = list(_check_periods(details, path, out, parts))
    return problems, not any(p.blocking for p in problems)


def _check_periods(
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
