"""A CCV order whose status CCV answers 401 while the account's other orders answer: that order's
failure, not the account's. CCV sent `401 {"error": "Unauthorized"}` for one order for ever, the
others answering: the account failed at each 401 and recovered at the next answer, a
`source.failed` / `source.recovered` pair about every poll.

A 401 after another answer of the pass took the key is the order's failure (the client's
`check_orders`, `REFUSED`). One before any (the slow start's first request, or a pass of that
order alone) is the account's unless a witness, an order whose last check answered a status,
answers now through the same key: a bad key still costs the pass one request, and where no order
answered yet (a first catch-up) it fails the account at once, one `source.failed`. Not while the
account fails already: that check was its probe, and it asks no more."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..model import UNKEPT_ANSWERS, Observation, OrderKey, Outcome
from ..sources.ccv import REFUSED
from ..sources.errors import OrderRefused
from .coordinator import Emit

if TYPE_CHECKING:
    from .ccv import CCVCoordinator


async def check_orders(coordinator: CCVCoordinator, order_ids: Sequence[str], emit: Emit) -> None:
    """The client's `check_orders` of `order_ids`, a 401 before any answer took the key being
    that order's failure when a witness answers (then the pass goes on with the others)."""
    done: set[str] = set()

    async def keep(observation: Observation) -> None:
        done.add(observation.key.order_id)
        await emit(observation)

    try:
        await coordinator.client.check_orders(order_ids, keep)
        return
    except OrderRefused as exc:
        if not await _key_taken(coordinator, [exc.order_id, *done], keep):
            raise
        refused = exc
    key = OrderKey("ccv", coordinator.account, refused.order_id)
    await keep(Observation(key, Outcome.FAILED, reason=REFUSED, asked=refused.asked))
    rest = [order_id for order_id in order_ids if order_id not in done]
    if rest:
        await coordinator.client.check_orders(rest, keep, key_taken=True)


async def _key_taken(coordinator: CCVCoordinator, passed: Sequence[str], keep: Emit) -> bool:
    """Whether a witness (not in `passed`) answers through the key, its check one of the pass's
    (`keep`); a witness that CCV refuses too says the key is refused; up to WITNESSES asked."""
    if (await coordinator.store.sources.state("ccv", coordinator.account)).failing:
        return False
    said: list[Observation] = []

    async def note(observation: Observation) -> None:
        said.append(observation)
        await keep(observation)

    for order_id in await coordinator.witnesses.choose(passed):
        coordinator.witnesses.asked(order_id)
        try:
            await coordinator.client.check_orders([order_id], note)
        except OrderRefused:
            return False
        if any(o.outcome is not Outcome.FAILED or o.reason in UNKEPT_ANSWERS for o in said):
            return True
    return False
