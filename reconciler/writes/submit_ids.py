"""The order a CCV submit's answer names: its body's order id field (not documented:
`[api] ccv_order_id_fields`, read ignoring case), and its `Location`'s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import unquote

from yarl import URL

from reconciler.model import InvalidOrderId, validate_ccv_id
from reconciler.redact import MASK, SecretForms, holds_secret
from reconciler.strict_json import loads_answer

from ..key_fold import fold


class _Repeated:
    """The value of a key an object names twice: which one CCV meant is not known."""


_REPEATED = _Repeated()


def _once(items: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(items)
    if len(document) < len(items):
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                document[key] = _REPEATED
            seen.add(key)
    return document


def order_id_from(
    answer: bytes, names: Sequence[str], key_forms: SecretForms | None = None
) -> str | None:
    """Return the new order's id from CCV's success answer (the field is not documented)."""
    try:
        # Read as a status answer is: a field CCV may add holding a long integer must not hide
        # the order id (the order would be made but not followed).
        document = loads_answer(answer, _once)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    for name in names:
        value = field_value(document, name)
        if value is _REPEATED:
            return None  # two ids, as a status answer naming a key twice is no answer
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            if holds_secret(value, key_forms):
                # Our key echoed back: it would be printed, stored and in events.
                return None
            try:
                return validate_ccv_id(value)
            except InvalidOrderId:
                continue  # an unusable field (`"orderId": ""`) leaves the next one to try
    return None


def names_an_order(answer: bytes, names: Sequence[str]) -> bool:
    """Whether CCV's answer holds an order id field (`names`) with a value, usable or not
    (`"ORD 7/2"`, named twice, holding a secret): CCV then said it made an order, though not
    one reconciler can follow, and no person's word that it got no submit may close it. At its
    top, or nested at any depth (`[{"id": ...}]`, `{"order": {"id": ...}}`: a shape not
    documented), but never inside `error`/`errors` (those name no order made). A nested id
    that is not the order's (an item's, a request's) costs at most the reference: `ccv
    resolve --made` closes it; one taken for none, a second order."""
    try:
        document = loads_answer(answer, _once)
    except (ValueError, RecursionError):
        return False
    # Walked without recursion: the answer's nesting is bounded by its size alone.
    left: list[object] = [document]
    while left:
        value = left.pop()
        if isinstance(value, dict):
            if any(field_value(value, n) is not None for n in names):
                return True
            left.extend(v for k, v in value.items() if fold(k) not in _ERRORS)
        elif isinstance(value, list):
            left.extend(value)
    return False


# Where an answer describes what went wrong: an id in there is the error's, not an order's.
_ERRORS = frozenset({"error", "errors"})


def field_value(document: Mapping[str, object], name: str) -> object:
    """The value of the field `name` in a JSON object of CCV's, its case ignored (a .NET
    serializer writes `OrderId`, and CCV may read JSON ignoring case): fields naming it in any
    cases, the exact one too, with different values are as one named twice (which one CCV
    meant is not known, as a request naming both is refused: `submit_body`); a null is none, and
    so is a string empty after its white space (`""`, `"  "`: it names no order, as null does;
    taken for one, `--not-sent` would be refused for an answer that proves nothing)."""
    folded = fold(name)
    values = [v for k, v in document.items() if fold(k) == folded and not _blank(v)]
    if not values:
        return None
    first = values[0]
    same = all(v is not _REPEATED and type(v) is type(first) and v == first for v in values)
    return first if same else _REPEATED


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def location_order_id(location: str, names: Sequence[str]) -> str | None:
    """The order a `Location` of CCV's names, where it names one: the path segment after an
    `order` segment (`/api/ordercompletion/reseller/order/ID`, `.../order/ID/status`), else a
    query field of the order id's names (`?orderId=ID`, its case ignored)."""
    try:
        url = URL(location)
    except (ValueError, TypeError):
        return None
    parts = [p for p in url.path.split("/") if p]
    for i, part in enumerate(parts[:-1]):
        if part.casefold() == "order":
            return parts[i + 1]
    # Its `+` kept (an order id holds no space): read as a space, a key holding one would no
    # longer be found in it, and would be logged (`submit_outcome._location_differs`).
    query: dict[str, str] = {}
    for pair in url.raw_query_string.split("&"):
        key, _, value = pair.partition("=")
        query[fold(unquote(key))] = unquote(value)
    return next((query[fold(n)] for n in names if query.get(fold(n))), None)


def _reseller_order(location: str) -> str | None:
    """The order a `Location` names on CCV's own order path (`.../reseller/order/ID`) alone: a
    redirect elsewhere (a login page's `?id=SESSION`, `/order/login`) names no order."""
    try:
        parts = [p for p in URL(location).path.split("/") if p]
    except (ValueError, TypeError):
        return None
    for i in range(1, len(parts) - 1):
        if parts[i].casefold() == "order" and parts[i - 1].casefold() == "reseller":
            return parts[i + 1]
    return None


def named_order(
    body: bytes,
    location: str | None,
    names: Sequence[str],
    key_forms: SecretForms | None,
    *,
    success: bool = False,
) -> str | None:
    """The order an answer of CCV's that is no success names, where it names a usable one: its
    body's order id field (`order_id_from`), else its `Location`'s (checked as a body's is).
    A 409 or a 5xx naming one says CCV has an order of the reference (an earlier submit's, or
    this one's made before the error), and the id is kept: `store/not_sent.refusal` refuses
    the word that would send the reference again."""
    # An error's bare `id` is not its order's: an error's own (`{"id": "conflict"}`, a
    # gateway's trace id) would be taken for one, and a person's word that CCV never got the
    # submit refused for it. A 2xx's or a 303's (`success`: CCV made the order) is its order's,
    # as the submit's parser reads it, and so is its Location's.
    found = order_id_from(
        body, names if success else [n for n in names if fold(n) != "id"], key_forms
    )
    if found is not None or location is None:
        return found
    pointed = location_order_id(location, names) if success else _reseller_order(location)
    if pointed is None or MASK in pointed or holds_secret(pointed, key_forms):
        return None
    try:
        return validate_ccv_id(pointed)
    except InvalidOrderId:
        return None
