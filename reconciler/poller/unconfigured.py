"""Orders no coordinator checks: those of an account the store follows orders of that the config
no longer names (removed, or renamed: an order belongs to the account it was tracked under).

Nothing polls them, so `check`, `run`, `catch-up` and `status` say so, one warning line per such
account with open orders, rather than leave them silently unchecked. It is a warning, not a
failure: the accounts that are configured were all asked, and trying again changes nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..config import Config
from ..logs import fields
from ..model import SOURCES, Source
from ..store import Store

log = logging.getLogger("reconciler.poller")


@dataclass(frozen=True, slots=True)
class Unconfigured:
    """An account the store follows orders of and the config does not name."""

    source: Source
    account: str
    followed: int  # every order of the account in the snapshot
    open: int  # those not in an end state: the ones a check would have asked about

    @property
    def hint(self) -> str:
        """What to do about it, with the account's own names filled in."""
        s, a = self.source, self.account
        return (
            f"no [[{s}]] account is named {a!r}, so its open orders are never checked: name it "
            f"again, or untrack them (`reconciler untrack {s} ID... --account {a}`; after a "
            f"rename, `reconciler track {s} ID... --account NEW` first)"
        )


def configured(config: Config) -> set[tuple[str, str]]:
    """The (source, account) pairs the config names."""
    return {("ccv", c.name) for c in config.ccv} | {("ccnow", c.name) for c in config.ccnow}


async def followed_accounts(store: Store) -> Counter[tuple[Source, str]]:
    """Orders followed per (source, account), of every account the store has orders of."""
    followed: Counter[tuple[Source, str]] = Counter()
    # The kept counts: a few rows whatever the size of the store.
    for (source, account, _), n in (await store.orders.counts()).items():
        if source in SOURCES:
            followed[(source, account)] += n
    return followed


async def unconfigured_accounts(config: Config, store: Store) -> list[Unconfigured]:
    """The accounts the store follows orders of that the config does not name, by name."""
    names = configured(config)
    return [
        Unconfigured(source, account, n, await store.orders.open_count(source, account))
        for (source, account), n in sorted((await followed_accounts(store)).items())
        if (source, account) not in names
    ]


def warn_unconfigured(found: Iterable[Unconfigured], source: Source | None = None) -> None:
    """One warning line per account (of `source`, when given) whose open orders nobody checks;
    an account whose orders have all ended waits for nothing (retention prunes them)."""
    for u in found:
        if u.open and source in (None, u.source):
            log.warning(
                "orders.account_not_configured",
                extra=fields(
                    source=u.source,
                    account=u.account,
                    open_orders=u.open,
                    followed=u.followed,
                    hint=u.hint,
                ),
            )
