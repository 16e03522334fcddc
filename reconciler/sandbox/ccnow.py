"""The simulator's CCNow Order Update API: the form a post carries, the lines it answers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from reconciler.model import InvalidOrderId, normalize_ccnow_id

from .model import World

CCNOW_PATH = "/cgi-local/oapi_receive.cgi"

# The per-order answer to an action on an order that is not `pending`: the document's actions
# only take an order the merchant still has to process. The wording is ours; CCNow's is unknown.
NOT_PENDING = "error_message order not pending"
_CCNOW_ORDER_FIELD = re.compile(r"^x_orderid_(\d{1,9})$", re.ASCII)
_USD = re.compile(r"([0-9]{1,7})(?:\.([0-9]{1,2}))?", re.ASCII)
# The queue state an action puts a pending order in; the lifecycle takes it on from there.
_QUEUED_BY: Final[Mapping[str, str]] = {"ship": "mark_shipped", "cancel": "mark_canceled"}


def ccnow_answer(world: World, form: Mapping[str, object]) -> str:
    """Return the text answer to one logged-in post: the pending list or one line per order."""
    numbered: dict[int, str] = {}
    for key, value in form.items():
        match = _CCNOW_ORDER_FIELD.match(key)
        if match and isinstance(value, str):
            numbered.setdefault(int(match.group(1)), value)
    if not numbered:
        pending = [oid for oid, order in world.ccnow.items() if order.status == "pending"]
        if not pending:
            return "message no_pending_orders\n"
        return "".join(f"{oid} pending\n" for oid in pending)
    world.stats.ccnow_max_batch = max(world.stats.ccnow_max_batch, len(numbered))
    lines = []
    for n in sorted(numbered):
        action = form.get(f"x_action_{n}")
        lines.append(
            _ccnow_line(world, numbered[n], action if isinstance(action, str) else "", form, n)
        )
    return "".join(f"{line}\n" for line in lines)


def has_action(form: Mapping[str, object]) -> bool:
    """Whether a post asks for an action that changes an order (not only queries)."""
    return any(key.startswith("x_action_") and value != "query" for key, value in form.items())


def _field(form: Mapping[str, object], name: str, n: int) -> str:
    value = form.get(f"{name}_{n}")
    return value.strip() if isinstance(value, str) else ""


def _cents(text: str) -> int | None:
    """USD with at most two decimals, above 0, in cents; None otherwise."""
    match = _USD.fullmatch(text)
    if match is None:
        return None
    cents = int(match.group(1)) * 100 + int((match.group(2) or "").ljust(2, "0"))
    return cents or None


def _ccnow_line(world: World, raw_id: str, action: str, form: Mapping[str, object], n: int) -> str:
    try:
        oid = normalize_ccnow_id(raw_id)
    except InvalidOrderId:
        return f"{''.join(raw_id.split()) or '-'} error_message invalid order id"
    order = world.ccnow.get(oid)
    if order is None:
        return f"{oid} error_message unknown order"
    action = action.strip()
    if action not in ("query", *_QUEUED_BY, "adjust", "track"):
        return f"{oid} error_message invalid action"
    if action == "query":
        return f"{oid} {order.status}"
    if order.status != "pending":
        return f"{oid} {NOT_PENDING}"
    if action in _QUEUED_BY:
        world.change(order, _QUEUED_BY[action], world.now(), world.rng_for(order, action))
    elif action == "adjust":
        cents = _cents(_field(form, "x_amount", n))
        if cents is None:
            return f"{oid} error_message adjust needs x_amount_{n} (USD above 0)"
        order.discount_cents += cents
    else:
        name, number = _field(form, "x_trackname", n), _field(form, "x_tracknumber", n)
        if not name or not number:
            return f"{oid} error_message track needs x_trackname_{n} and x_tracknumber_{n}"
        order.tracking.append((name, number))
    return f"{oid} {order.status}"
