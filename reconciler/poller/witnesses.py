"""The orders that say whether an account answers when a partial pass's own orders cannot: open
orders whose last check answered a status, asked one at a time (CCV's `_witness`, CCNow's
`_answers`), one rule for both providers.

Orders that fail on their own (a 500 each, for ever) come due together at their failures'
backoff, and a pass of them alone looks like an outage; another order answering now says it is
not. One whose last check answered may itself have broken since (its check not due yet): a
second is asked when the first fails. The witnesses take turns, up to ROTATION of the account's
orders that answered, so that no order is asked on every such pass (the first two in storage
order were, 137 times in 5 minutes).

Orders this process saw fail of an outage's reason (CCV's checks, a circuit breaker's run) are
no witnesses until one answers: their failure streaks are forgotten when the account recovers,
so storage alone names them answered again. A CCNow witness that failed, its query written
nowhere, is none until a check of its own answers later (`failed`).

A failing CCV account's probe asks, beside its rotation's order, one of the orders this process
saw answering when the account failed (`answering`), in turn: they, not orders failing on their
own, say when the outage is over. Kept in memory only: after a restart, the rotation alone.

When both witnesses fail while the account answers, up to two more are asked before it fails:
the orders this process saw answer last (`latest`). When most orders break at once (16 of 20),
each still looks answered in storage, and both witnesses were often broken too: the account
failed at that pass and recovered at its next probe, a false pair. An order that answered after
they broke is among those that answered last; when none did yet, the two more may be broken too,
and the pair still comes (less often: 4 of the 20 seeded onsets of the breaker tests, from 9).

Extra load, bounded: one request (two when the first witness fails: a real outage, or a witness
that broke; four at most when both fail while the account answers: once per outage, as then it
fails and asks no witness) per pass whose every check failed, spread over up to ROTATION orders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence

from ..model import OrderState, settled_at, unwatched

WITNESSES = 2  # asked in turn until one answers
ROTATION = 20  # different orders asked as witnesses before they start over
MAX_SUSPECTS = 100_000  # orders remembered as failing of an outage's reason


class Witnesses:
    """An account's witnesses: which to ask next, in turn."""

    def __init__(self, answered: Callable[[int], Awaitable[list[OrderState]]]) -> None:
        # Up to `limit` open orders whose last check answered, in storage order
        # (`Coordinator._answered`).
        self._answered = answered
        self._asked: set[str] = set()  # asked since the rotation last started over
        # Orders whose last check, as this process saw it, failed of an outage's reason (CCV's):
        # no witnesses until one answers. Their failure streaks are forgotten when the account
        # recovers (`forget_failures`): from storage alone, orders answering 500 for ever (16
        # of 20) looked answered again, were asked two by two, and failed the account again.
        self._suspects: set[str] = set()
        # When this process last saw orders answer a status, oldest first, the last ROTATION:
        # a failing account's probe asks these in turn (`answering`), a pass's two more
        # witnesses the last first (`latest`).
        self._answered_at: dict[str, float] = {}
        self._probed: set[str] = set()  # of those, asked by `probe` since the turn began
        # When witnesses whose answers are written nowhere (CCNow's, `failed`) failed: no
        # witnesses until a check of their own answers later (storage's last_checked). Else
        # one that broke, its own check not due, looked answered and was asked again at each
        # turn of the rotation, and two such asked together failed the account.
        self._failed_at: dict[str, float] = {}

    async def choose(self, passed: Collection[str]) -> list[str]:
        """Return up to WITNESSES orders not in `passed` (the pass's own) whose last check
        answered, those not asked as witnesses lately first, in storage order."""
        if len(self._asked) >= ROTATION:
            self._asked.clear()
        # Of this many, WITNESSES at least are neither the pass's nor asked, if so many exist.
        suspects, failed = self._suspects, self._failed_at
        limit = len(passed) + len(self._asked) + len(suspects) + len(failed) + WITNESSES
        states = await self._answered(limit)
        for state in states:  # its own check answered since it failed as a witness
            at = failed.get(state.key.order_id)
            if at is not None and (state.last_checked or 0.0) > at:
                del failed[state.key.order_id]
        ids = [
            i
            for s in states
            if (i := s.key.order_id) not in passed and i not in suspects and i not in failed
        ]
        fresh = [i for i in ids if i not in self._asked]
        if len(fresh) < WITNESSES:  # each was asked: the turn starts over
            self._asked.clear()
            fresh += [i for i in ids if i not in fresh]
        return fresh[:WITNESSES]

    def asked(self, order_id: str) -> None:
        """Note a witness asked: the others go first next time."""
        self._asked.add(order_id)

    def failed(self, order_id: str, at: float) -> None:
        """Note a witness that failed at `at` (the store's clock), its failure written nowhere:
        no witness until a check of its own answers after `at`."""
        if len(self._failed_at) >= MAX_SUSPECTS:  # bounded, as the suspects
            self._failed_at.clear()
        self._failed_at[order_id] = at

    def saw(self, order_id: str, *, outage: bool, answered_at: float | None = None) -> None:
        """Note a check of an order: failed of an outage's reason (a suspect) or not, and
        when it answered a status (None: it did not)."""
        if answered_at is not None:
            answered = self._answered_at
            answered.pop(order_id, None)
            answered[order_id] = answered_at
            if len(answered) > ROTATION:
                del answered[next(iter(answered))]
        if outage:
            self.suspect((order_id,))
        else:
            self._suspects.discard(order_id)

    def suspect(self, order_ids: Iterable[str]) -> None:
        """Note orders whose checks failed of an outage's reason."""
        if len(self._suspects) >= MAX_SUSPECTS:  # bounded: orders end, and are never seen again
            self._suspects.clear()
        self._suspects.update(order_ids)

    def suspects_last(self, order_ids: Sequence[str]) -> list[str]:
        """Return the orders, suspects last, else in the order given."""
        suspects = self._suspects
        if not suspects:
            return list(order_ids)
        return sorted(order_ids, key=suspects.__contains__)

    def answering(self, within_s: float) -> list[str]:
        """Return the orders a failing account's probe asks first, in turn: those this process
        saw answer a status within `within_s` of the last answer it saw (orders answering
        when the account failed; one failing on its own answered long before): those not
        asked since the turn began, suspects last, else in the order of their answers, the
        last first."""
        answered = self._answered_at
        if not answered:
            return []
        latest = answered[next(reversed(answered))]  # kept in the order they answered
        ids = [i for i in reversed(answered) if answered[i] >= latest - within_s]
        fresh = [i for i in ids if i not in self._probed]
        if not fresh:  # each was asked: the turn starts over
            self._probed.clear()
            fresh = ids
        return self.suspects_last(fresh)

    def latest(self, tried: Collection[str]) -> list[str]:
        """Return the orders this process saw answer a status, the last first, but suspects and
        those in `tried` (the pass's own and the witnesses it asked)."""
        suspects, tried = self._suspects, frozenset(tried)
        return [i for i in reversed(self._answered_at) if i not in tried and i not in suspects]

    def probed(self, order_id: str) -> None:
        """Note an order of `answering` asked by a failing account's probe."""
        self._probed.add(order_id)


def still_answered(state: OrderState | None, *, settled_since: float) -> bool:
    """Whether an order is open and watched, and its last check answered a status, as
    `Orders.answered` reads storage (store/order_sql.py's ANSWERED_SQL)."""
    if state is None or state.end_state or state.status is None:
        return False
    if state.failure_streak or state.not_found or state.missing_since is not None:
        return False
    changed = settled_at(state.last_changed, state.tracked_at)
    return not unwatched(state.key.source, state.status, changed, settled_since=settled_since)
