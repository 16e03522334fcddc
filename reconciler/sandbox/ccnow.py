"""The simulator's CCNow Order Update API: the form a post carries, the lines it answers."""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.model import InvalidOrderId, normalize_ccnow_id

from .model import World

CCNOW_PATH = "/cgi-local/oapi_receive.cgi"

# The per-order answer to `ship` or `cancel` of an order that is not `pending`: both actions
# only take an order the merchant still has to process. The wording is ours; CCNow's is unknown.
NOT_PENDING = "error_message order not pending"
_CCNOW_ORDER_FIELD = re.compile(r"^x_orderid_(\d{1,9})$", re.ASCII)
# The queue state an action puts a pending order in; the lifecycle takes it on from there.
_QUEUED_BY = {"ship": "mark_shipped", "cancel": "mark_canceled"}


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
    if action in _QUEUED_BY:
        if order.status != "pending":
            return f"{oid} {NOT_PENDING}"
        world.change(order, _QUEUED_BY[action], world.now(), world.rng_for(order, action))
    elif action not in ("query", "adjust", "track"):
        return f"{oid} error_message invalid action"
    return f"{oid} {order.status}"
