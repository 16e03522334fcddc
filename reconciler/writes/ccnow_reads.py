"""The status reads a CCNow action's answer asks for (writes/ccnow_close.py): a ship or cancel
whose answer does not say it took is read back, through the account's bound (its gate) and its
rest (sources/rest.py: no read while the provider asked the account to wait)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import aiohttp

from reconciler.config import CCNowConfig
from reconciler.model import Observation, Outcome
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.errors import RestAsked, SourceError
from reconciler.sources.http import Gates
from reconciler.sources.rest import AccountRest
from reconciler.writes.in_flight import InFlight, Stopping


class StatusReads:
    """The status reads an answer's commands ask (a ship or cancel whose answer does not say
    it took), and the longest Retry-After they were asked (`wait`, seconds; None: none): once
    one asks longer than a retry may wait, no read is asked within it (the account's rate
    limit, not the order's), and their commands wait as long."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cfg: CCNowConfig,
        gates: Gates,
        in_flight: InFlight,
        secrets: Sequence[str] = (),
        rest: AccountRest | None = None,  # the account's: no read while it rests
    ) -> None:
        self.session, self.cfg, self.gates, self.rest = session, cfg, gates, rest
        self.in_flight, self.secrets = in_flight, secrets
        self.wait: float | None = None

    async def read(self, order_id: str) -> Observation | None:
        """Read an order's status (None: not read); Stopping: not read for the stop."""
        seen: list[Observation] = []

        async def emit(o: Observation) -> None:
            seen.append(o)

        if self.in_flight.stopping:
            raise Stopping  # no new request during a stop
        if self.wait is not None and self.wait > self.cfg.retry.max_backoff_s:
            return None  # an earlier read was asked to wait: not read (the account's limit)
        gate, halt = self.gates.of(self.cfg), self.in_flight.halt
        client = CCNowClient(
            self.cfg,
            self.session,
            halt=halt,
            gate=gate,
            rest=self.rest,
            secrets=self.secrets,
            long_wait_ends=True,
        )
        try:
            await client.query([order_id], emit)
        except RestAsked as exc:
            # The account rests (now, or since an earlier process was asked): its commands
            # wait as long as its reads, not posted again within the rest.
            self.wait = max(self.wait or 0.0, exc.until - time.time())
            return None
        except SourceError:
            if self.in_flight.stopping:
                raise Stopping from None
            return None
        finally:
            if client.asked_wait is not None:
                self.wait = max(self.wait or 0.0, client.asked_wait)
        return next((o for o in seen if o.outcome is Outcome.OK), None)
