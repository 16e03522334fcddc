"""The coordinators of every configured account, built with their clients, and the catch-up that
asks each of them once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from ..config import Config
from ..model import Source
from ..passes.report import PassReport
from ..redact import config_secrets
from ..sources.ccnow import CCNowClient
from ..sources.ccv import CCVClient
from ..sources.http import Gates
from ..store.passes import remember_pass
from .ccnow import CCNowCoordinator
from .ccv import CCVCoordinator
from .coordinator import Coordinator

if TYPE_CHECKING:
    from ..reconcile import Reconciler


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
        secrets = tuple(config_secrets(config))
        remember = None if config.receiver is None else config.receiver.remember_ref_s
        return cls(
            writer,
            ccv={
                c.name: CCVCoordinator(
                    c,
                    CCVClient(c, session, gate=gates.of(c), secrets=secrets),
                    writer,
                    remember_ref_s=remember,
                    secrets=secrets,
                )
                for c in config.ccv
            },
            ccnow={
                c.name: CCNowCoordinator(
                    c,
                    CCNowClient(c, session, gate=gates.of(c), secrets=secrets),
                    writer,
                    secrets=secrets,
                )
                for c in config.ccnow
            },
        )

    def __iter__(self) -> Iterator[Coordinator[Any]]:
        """Iterate over the CCV accounts, then the CCNow accounts."""
        yield from self.ccv.values()
        yield from self.ccnow.values()

    def get(self, source: Source, account: str) -> Coordinator[Any] | None:
        """Return the coordinator of one account, or None when it is not configured."""
        return (self.ccv if source == "ccv" else self.ccnow).get(account)

    async def catch_up(self, source: Source | None = None) -> PassReport:
        """Check every followed order not in an end state once, plus the CCNow pending list."""
        report = PassReport()
        writer = self.writer
        started = writer.clock()
        coordinators: list[Coordinator[Any]] = [*self.ccnow.values(), *self.ccv.values()]
        # All at once, each within its own account's bound: one slow account must not keep the
        # others unasked (README "Bounded"). A provider's failure is in its pass's report; what
        # a pass raises (the store's failure) lets the others end and write what they found,
        # then is raised, the first in this order. Cancelling the gather cancels every pass.
        results = await asyncio.gather(
            *(c.full_pass(via="catch-up") for c in coordinators if source in (None, c.source)),
            return_exceptions=True,
        )
        for result in results:  # CCNow first, as ever: the report's counts in one order
            if isinstance(result, BaseException):
                raise result
            report.add(result)
        name = "catch-up" if source is None else f"catch-up {source}"
        await remember_pass(writer.store, name, report, started, writer.clock())
        return report
