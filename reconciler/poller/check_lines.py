"""The log lines of orders whose checks start failing while their account answers (an account's
own failure is its `source.failed` event instead)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from ..logs import fields
from ..model import Observation, Source

log = logging.getLogger("reconciler.poller")


def log_started_failing(
    source: Source, account: str, started_failing: Sequence[Observation], more: Counter[str]
) -> None:
    """Log one line per order whose checks start failing while its account answers (the
    first STARTED_FAILING_LINES of a pass), then one line with how many more; the failures
    that follow are counted in the metrics only."""
    for obs in started_failing:
        log.warning(
            "order.check_failed",
            extra=fields(
                source=obs.key.source,
                account=obs.key.account,
                order_id=obs.key.order_id,
                reason=obs.reason,
            ),
        )
    if more:
        # Thousands of orders refused at once (a key's rights cut) are one line more, not
        # thousands: the metrics count each.
        counts = {"more": sum(more.values()), "reasons": dict(sorted(more.items()))}
        log.warning("orders.check_failed", extra=fields(source=source, account=account, **counts))
