"""An account's rest at its provider's word: a 429 or 503 whose Retry-After asks longer than a
request's own retries wait (`retry.max_backoff_s`) rests every read of the account until then,
an hour at most (schedule.rest_until). The account's clients hold it for each request
(`sources.http.request`), its coordinator records it (poller/rests.py: after each pass, and as
the process ends, for a rest a read outside a pass was asked): one per account and process, as
its gate (Gates)."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..json_text import iso_time
from ..schedule import held_rest, rest_until, rests
from .errors import RestAsked


class AccountRest:
    """Until when an account's reads wait, on `clock` (the coordinator's, which the store's
    record of it is dated by), and whether its coordinator has yet to record it (`take`)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.until: float | None = None
        self._word = "http 429"
        self._taken: float | None = None  # the last `until` the coordinator took

    def asked(self, wait_s: float | None, status: int | None, *, cap_s: float) -> RestAsked | None:
        """Note an answer of `status` whose Retry-After asked `wait_s` seconds; return the
        failure that ends its request when it is a 429 or a 503 (the provider turned it away)
        asking longer than the request's own retries wait (`cap_s`), the account resting from
        now on, else None (a 500's Retry-After is waited for within the request, as before)."""
        if status not in (429, 503):
            return None
        now = self._clock()
        until = rest_until(wait_s, cap_s=cap_s, now=now)
        if until is None:
            return None
        self._word = f"http {status}"
        self.until = max(until, held_rest(self.until, now=now) or until)
        return self.failure(held=False)

    def hold(self, until: float | None) -> None:
        """Rest until `until` too (a rest recorded in the store: another process's, an earlier
        start's), when it is later than the one held."""
        now = self._clock()
        if until is not None and rests(until, now=now):
            self.until = max(until, held_rest(self.until, now=now) or until)
            # recorded already
            self._taken = max(until, held_rest(self._taken, now=now) or until)

    def failure(self, *, held: bool = True) -> RestAsked | None:
        """Return the failure of a request the account's rest keeps back (`held`: none was
        sent; else the provider's answer began or lengthened the rest), None when none."""
        if not rests(self.until, now=self._clock()):
            return None
        assert self.until is not None
        word = f"{self._word}: resting until {iso_time(self.until)}"
        return RestAsked(word, self.until, held=held)

    def take(self) -> float | None:
        """Return until when the account rests, once per rest (or a later end of it), for its
        coordinator to record and log; None when there is nothing new."""
        until, taken = self.until, held_rest(self._taken, now=self._clock())
        if until is None or (taken is not None and until <= taken):
            return None
        self._taken = until
        return until
