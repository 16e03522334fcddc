"""A CCNow query's orders put in batches, and an answer matched to the orders it asked
(sources/ccnow_query.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from reconciler.config import CCNowConfig
from reconciler.model import (
    ORDER_ERROR,
    InvalidOrderId,
    Observation,
    OrderKey,
    Outcome,
    normalize_ccnow_id,
)
from reconciler.sources.ccnow_answer import Answer, by_id

log = logging.getLogger("reconciler.sources.ccnow")

Emit = Callable[[Observation], Awaitable[None]]

# The check of an order an answer held no line for.
MISSING = "missing"


async def in_batches(
    config: CCNowConfig, order_ids: Sequence[str], emit: Emit
) -> Iterator[list[str]]:
    """The orders to query, once each, in batches of the config's size; an id that is not
    CCNow's fails `invalid_id` (never asked)."""
    valid: dict[str, None] = {}
    for raw in order_ids:
        try:
            valid[normalize_ccnow_id(raw)] = None
        except InvalidOrderId:
            key = OrderKey("ccnow", config.name, raw)
            await emit(Observation(key, Outcome.FAILED, reason="invalid_id", asked=time.time()))
    ids, size = list(valid), max(1, config.batch_size)
    return (ids[start : start + size] for start in range(0, len(ids), size))


def match(account: str, batch: list[str], answer: Answer, asked: float) -> list[Observation]:
    """Turn an answer into one observation per asked order, matched by id; `asked`: when the
    attempt that brought it was sent."""
    lines, disagreeing = by_id(answer, words=False)
    unasked = lines.keys() - set(batch)
    if unasked:
        log.debug("ccnow.unasked_ids", extra={"fields": {"order_ids": sorted(unasked)}})
    observations = []
    for order_id in batch:
        key = OrderKey("ccnow", account, order_id)
        line = lines.get(order_id)
        if order_id in disagreeing:
            observations.append(Observation(key, Outcome.FAILED, reason="protocol", asked=asked))
        elif line is None:
            observations.append(Observation(key, Outcome.FAILED, reason=MISSING, asked=asked))
        elif line.not_found:
            observations.append(Observation(key, Outcome.NOT_FOUND, asked=asked))
        elif line.status is None:
            observations.append(Observation(key, Outcome.FAILED, reason=ORDER_ERROR, asked=asked))
        else:
            observations.append(Observation(key, Outcome.OK, status=line.status, asked=asked))
    return observations


def missing_lines(account: str, batch: list[str], asked: float) -> list[Observation]:
    """The observations of orders an answer held no line for (`MISSING`)."""
    return [
        Observation(OrderKey("ccnow", account, i), Outcome.FAILED, reason=MISSING, asked=asked)
        for i in batch
    ]
