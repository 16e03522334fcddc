"""Orders made due now: a hint whose check got no answer (a CCNow notification met by the
account's outage) is kept as its order being due, in the store, so that the first due checks
once the provider answers again ask it, and a restart too. Never later than it was planned."""

from __future__ import annotations

from collections.abc import Sequence

from ..model import Source
from .db import Store


async def make_due(
    store: Store,
    source: Source,
    account: str,
    ids: Sequence[str],
    now: float,
    *,
    unless_asked_within: tuple[float, float],
) -> int:
    """Bring the next check of these orders, open ones only, to `now` at the latest; but not
    of one whose held answer was asked within `unless_asked_within` (from when the hint came
    to now, on the clock of `Observation.asked`). Return how many were kept due."""
    if not ids:
        return 0
    # An answer asked after the hint came (another pass's, while the hint's check failed) is
    # news of the change, and planned the next check: pulling it back would only ask again.
    # Not `last_checked`: when an answer was applied, it may have been asked before the hint
    # came, and older than the change. One asked "after now" is of a clock put back since:
    # nothing can be judged against it (as diff.stale). Never answered (NULL): due.
    async with store.transaction(urgent=True):  # a hint's record: before a pass's batches
        return await store.orders.bring_due(
            source, account, ids, now, unless_asked_within=unless_asked_within
        )
