"""The simulator's CCNow Order Update API: the form a post carries, the lines it answers."""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.model import InvalidOrderId, normalize_ccnow_id

from .model import World

CCNOW_PATH = "/cgi-local/oapi_receive.cgi"

# CCNow: which states `cancel` may move to mark_canceled.
_CCNOW_CANCELABLE = frozenset(
    (
        "received",
        "paypal_hold",
        "processing",
        "vacation_hold",
        "preorder_hold",
        "getman_hold",
        "pending",
    )
)
_CCNOW_ORDER_FIELD = re.compile(r"^x_orderid_(\d{1,9})$")


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
        lines.append(_ccnow_line(world, numbered[n], action if isinstance(action, str) else ""))
    return "".join(f"{line}\n" for line in lines)


def _ccnow_line(world: World, raw_id: str, action: str) -> str:
    try:
        oid = normalize_ccnow_id(raw_id)
    except InvalidOrderId:
        return f"{''.join(raw_id.split()) or '-'} error_message invalid order id"
    order = world.ccnow.get(oid)
    if order is None:
        return f"{oid} error_message unknown order"
    action = action.strip()
    if action == "ship":
        if order.status != "pending":
            return f"{oid} error_message order not pending"
        world.change(order, "mark_shipped", world.now(), world.rng_for(order, "ship"))
    elif action == "cancel":
        if order.status not in _CCNOW_CANCELABLE:
            return f"{oid} error_message order cannot be canceled"
        world.change(order, "mark_canceled", world.now(), world.rng_for(order, "cancel"))
    elif action not in ("query", "adjust", "track"):
        return f"{oid} error_message invalid action"
    return f"{oid} {order.status}"
