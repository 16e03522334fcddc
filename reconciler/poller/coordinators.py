"""The coordinators of every configured account, built with their clients, and the catch-up that
asks each of them once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from ..config import Config
from ..logs import fields
from ..model import Source
from ..passes.report import PassReport
from ..redact import config_secrets
from ..sources.http import Gates
from ..sources.rest import AccountRest
from ..store.errors import StoreError
from ..store.passes import remember_pass
from .coordinator import Coordinator
from .rests import catch_up_pass, record_rest

if TYPE_CHECKING:
    from ..reconcile import Reconciler
    from .ccnow import CCNowCoordinator
    from .ccv import CCVCoordinator

log = logging.getLogger("reconciler.poller")
T = TypeVar("T")


def _first_raised(results: Sequence[T | BaseException], names: Sequence[str]) -> list[T]:
    """Return what concurrent passes (`asyncio.gather(..., return_exceptions=True)`, named
    by `names`) returned, or raise the first exception among them, after a line
    `catch_up.pass_failed` for each other one: a bug raised beside the store's failure must
    leave a trace (its traceback; the store's own failure is logged by the store's health)."""
    raised = [
        (name, r) for name, r in zip(names, results, strict=True) if isinstance(r, BaseException)
    ]
    for name, exc in raised[1:]:
        log.error(
            "catch_up.pass_failed",
            extra=fields(name=name, error=repr(exc)),
            exc_info=None if isinstance(exc, StoreError) else exc,
        )
    if raised:
        raise raised[0][1]
    return [r for r in results if not isinstance(r, BaseException)]


@dataclass(frozen=True)
class Coordinators:
    """One coordinator per account, by account name, in configuration order."""

    writer: Reconciler
    ccv: dict[str, CCVCoordinator]
    ccnow: dict[str, CCNowCoordinator]

    @classmethod
    def build(
        cls,
        config: Config,
        writer: Reconciler,
        session: aiohttp.ClientSession,
        gates: Gates,
    ) -> Coordinators:
        """Return a coordinator for every configured account, each with its HTTP client and
        the account's bound from `gates` (the process's, shared with its writes)."""
        secrets = config_secrets(config)
        remember = None if config.receiver is None else config.receiver.remember_ref_s
        ccv: dict[str, CCVCoordinator] = {}
        ccnow: dict[str, CCNowCoordinator] = {}
        # A source's client and coordinator are imported only when an account of it is
        # configured: a process asks nothing of the other (CCNow's answer reader alone builds
        # a few dozen patterns).
        if config.ccv:
            from ..sources.ccv import CCVClient
            from .ccv import CCVCoordinator

            for v in config.ccv:
                rest = AccountRest(clock=writer.clock)  # the account's client and coordinator's
                asks = CCVClient(v, session, gate=gates.of(v), secrets=secrets, rest=rest)
                ccv[v.name] = CCVCoordinator(
                    v, asks, writer, remember_ref_s=remember, secrets=secrets, rest=rest
                )
        if config.ccnow:
            from ..sources.ccnow import CCNowClient
            from .ccnow import CCNowCoordinator

            for n in config.ccnow:
                rest = AccountRest(clock=writer.clock)
                posts = CCNowClient(n, session, gate=gates.of(n), secrets=secrets, rest=rest)
                ccnow[n.name] = CCNowCoordinator(n, posts, writer, secrets=secrets, rest=rest)
        return cls(writer, ccv=ccv, ccnow=ccnow)

    def __iter__(self) -> Iterator[Coordinator[Any]]:
        """Iterate over the CCV accounts, then the CCNow accounts."""
        yield from self.ccv.values()
        yield from self.ccnow.values()

    async def hold_recorded_rests(self) -> None:
        """Hold each account's rest its health record keeps (a process before this one was
        asked it): the reads a command line's writes ask wait for it too, not only ticks."""
        for c in self:
            c.rest.hold((await c.store.sources.state(c.source, c.account)).rest_until)

    async def record_rests(self) -> None:
        """Record each account's rest its reads were asked that no pass of it recorded yet (a
        `ccnow` command line's status read: no pass follows in that process), as a pass does
        (`record_rest`): the next process holds it too, a `catch-up` asking nothing within it."""
        for c in self:
            await record_rest(c)

    def get(self, source: Source, account: str) -> Coordinator[Any] | None:
        """Return the coordinator of one account, or None when it is not configured."""
        return (self.ccv if source == "ccv" else self.ccnow).get(account)

    async def catch_up(self, source: Source | None = None) -> PassReport:
        """Check every followed order not in an end state once, plus the CCNow pending list."""
        report = PassReport()
        writer = self.writer
        started = writer.clock()
        every: list[Coordinator[Any]] = [*self.ccnow.values(), *self.ccv.values()]
        coordinators = [c for c in every if source in (None, c.source)]
        # All at once, each within its own account's bound: one slow account must not keep the
        # others unasked (README "Bounded"). A provider's failure is in its pass's report; what
        # a pass raises (the store's failure, a bug) lets the others end and write what they
        # found, then the first in this order (CCNow's, then CCV's) is raised, the others
        # logged. Cancelling the gather cancels every pass.
        results = await asyncio.gather(
            *(catch_up_pass(c) for c in coordinators), return_exceptions=True
        )
        for result in _first_raised(results, [c.name for c in coordinators]):
            report.add(result)
        name = "catch-up" if source is None else f"catch-up {source}"
        await remember_pass(writer.store, name, report, started, writer.clock())
        return report

    async def startup_pass(self) -> PassReport:
        """The daemon's start-up pass: a catch-up, and beside it the heartbeat of each CCV
        account it asks nothing (no open order)."""
        # Proved now, not by the heartbeat a poll interval later, nor after a long pass over the
        # others: else /healthz says 503 for that long after every restart, a false alert.
        # Beside the pass, not before it: a CCV that hangs for an idle account must not hold
        # every other account back (README "Bounded").
        idle = [
            ccv
            for ccv in self.ccv.values()
            if not await self.writer.store.orders.open_count(
                "ccv", ccv.account, settled_since=ccv.settled_since()
            )
        ]
        for ccv in self.ccv.values():
            ccv.catch_ups.beside_ticks = True  # the scheduler's due ticks run beside it
        passes = [self.catch_up(), *(ccv.heartbeat() for ccv in idle)]
        results = await asyncio.gather(*passes, return_exceptions=True)
        report, *proved = _first_raised(
            results, ["catch-up", *(f"{ccv.name} heartbeat" for ccv in idle)]
        )
        for probe in proved:
            report.add(probe)
        return report
