"""Orders no coordinator checks: those of an account the store follows orders of that the config
no longer names (removed, or renamed: an order belongs to the account it was tracked under).

Nothing polls them, and nothing sends or settles the writes of such an account (a CCV submit or
a CCNow action left uncertain, a CCNow action queued), so `check`, `run`, `catch-up` and `status`
say so, one warning line per such account with open orders or such writes, rather than leave
them silently unchecked. It is a warning, not a failure: the accounts that are configured were
all asked, and trying again changes nothing.

So too the undelivered events of a sink name the config no longer names: an unnamed sink is
named by its type and position (`jsonl`, `jsonl-2`), so removing or adding one renames those
after it, and a typo renames one. Their backlogs wait under names nothing delivers to for a week
from when a start or prune first found the name unconfigured (retention then lets go of them,
store/gone_sinks.py), so that naming the sink again within it delivers them. `check`, `run`,
`catch-up` and `status` say so; `catch-up` counts them undelivered (75).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..config import Config
from ..json_text import iso_time
from ..logs import fields
from ..model import SOURCES, Source
from ..store import Store, gone_sinks, unsettled

log = logging.getLogger("reconciler.poller")


@dataclass(frozen=True, slots=True)
class Unconfigured:
    """An account the store follows orders of and the config does not name."""

    source: Source
    account: str
    followed: int  # every order of the account in the snapshot
    open: int  # neither ended nor settled (nobody watches those here): what a check would ask
    uncertain_writes: int = 0  # CCV submits, CCNow actions: waiting for a person's word
    queued_writes: int = 0  # CCNow actions never sent (or to be sent again): nothing sends them

    @property
    def waiting(self) -> bool:
        """Whether anything of the account waits for someone: open orders, unsettled writes."""
        return bool(self.open or self.uncertain_writes or self.queued_writes)

    @property
    def hint(self) -> str:
        """What to do about it, with the account's own names filled in."""
        s, a = self.source, self.account
        hints = []
        if self.open:
            hints.append(
                "its open orders are never checked: name it again, or untrack them "
                f"(`reconciler untrack {s} ID... --account {a}`; after a rename, "
                f"`reconciler track {s} ID... --account NEW` first)"
            )
        if self.uncertain_writes:
            settle = (
                f"`reconciler track ccv ID --ref REF --account {a}` (or `reconciler ccv "
                f"resolve --ref REF --not-sent --account {a}` when CCV has no such order)"
                if s == "ccv"
                else f"`reconciler ccnow resolve ID --sent|--not-sent --account {a}` (with "
                "`--action ACTION` for an order with uncertain actions of several kinds)"
            )
            hints.append(f"its uncertain writes wait for a person's word: {settle}")
        if self.queued_writes:
            hints.append(
                "its queued actions are never sent: name it again, with its credentials, "
                "until they are"
            )
        return f"no [[{s}]] account is named {a!r}: " + "; ".join(hints)


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


async def unsettled_writes(store: Store) -> dict[tuple[Source, str], tuple[int, int]]:
    """(uncertain, queued) writes per (source, account): CCV submits and CCNow actions that
    nothing has settled yet (a CCNow action being sent counts as queued)."""
    found: dict[tuple[Source, str], tuple[int, int]] = {
        ("ccv", account): (n, 0) for account, n in (await unsettled.unsettled_counts(store)).items()
    }
    for (account, state), n in (await unsettled.action_counts(store)).items():
        uncertain, queued = found.get(("ccnow", account), (0, 0))
        if state == "uncertain":
            uncertain += n
        else:
            queued += n
        found[("ccnow", account)] = (uncertain, queued)
    return found


async def unconfigured_accounts(config: Config, store: Store) -> list[Unconfigured]:
    """The accounts the store follows orders of, or holds unsettled writes of, that the config
    does not name, by name."""
    names = configured(config)
    followed = await followed_accounts(store)
    writes = await unsettled_writes(store)
    # Nobody watches the settled orders of an account the config does not name: as for
    # retention, their watch ended (model.unwatched), so they are not open.
    now = time.time()
    return [
        Unconfigured(
            source,
            account,
            followed.get((source, account), 0),
            await store.orders.open_count(source, account, settled_since=now),
            *writes.get((source, account), (0, 0)),
        )
        for source, account in sorted(followed.keys() | writes.keys())
        if (source, account) not in names
    ]


def warn_unconfigured(found: Iterable[Unconfigured], source: Source | None = None) -> None:
    """One warning line per account (of `source`, when given) whose open orders nobody checks
    or whose writes nobody settles; an account whose orders have all ended, with no such write,
    waits for nothing (retention prunes them)."""
    for u in found:
        if u.waiting and source in (None, u.source):
            log.warning(
                "orders.account_not_configured",
                extra=fields(
                    source=u.source,
                    account=u.account,
                    open_orders=u.open,
                    followed=u.followed,
                    uncertain_writes=u.uncertain_writes,
                    queued_writes=u.queued_writes,
                    hint=u.hint,
                ),
            )


async def unconfigured_sinks(
    config: Config, store: Store, pending: Mapping[str, int] | None = None
) -> dict[str, tuple[int, float]]:
    """Undelivered events (pending or dead-lettered), by the sink name the store holds them
    under that the config does not name: how many, and the time of the oldest. `pending`: the
    pending deliveries per sink when the caller has counted them already (else the names are
    found by the outbox's key, and no configured sink's backlog is counted); the names holding
    dead letters alone are added to them."""
    from ..sinks import sink_names
    from ..store.event_pages import delivery_sinks

    names = set(sink_names(config))
    if pending is None:
        held = await delivery_sinks(store.conn)
    else:
        dead = await store.outbox.dead_counts()  # through its partial index: a few rows
        held = sorted({sink for sink, n in pending.items() if n} | set(dead))
    # The oldest event of those names alone: a configured sink's backlog is not read again.
    gone = sorted(sink for sink in held if sink not in names)
    since = await store.outbox.undelivered_since(gone)
    return {sink: since[sink] for sink in gone if sink in since}


def warn_unconfigured_sinks(
    found: Mapping[str, tuple[int, float]],
    keep_s: float,
    gone_since: Mapping[str, float],
    now: float,
) -> None:
    """One warning line per sink name no longer configured that holds undelivered events;
    `keep_s`: `[store] keep_events`; `gone_since`: when a start or prune first found each name
    unconfigured (store/gone_sinks.py; none yet: the next one does). Retention lets go of them
    a week after that, of an event older than keep_s sooner: the hint says when, for the
    oldest, or that the next prune does when that time is past."""
    for sink, (count, oldest) in found.items():
        since = gone_since.get(sink)
        let_go = gone_sinks.let_go_at(since, oldest, keep_s, now)
        first = iso_time(since) if since is not None else "not yet: by the next start or prune"
        when = f"from {iso_time(let_go)}" if let_go > now else "at the next prune"
        log.warning(
            "sinks.sink_not_configured",
            extra=fields(
                sink=sink,
                undelivered=count,
                oldest=iso_time(oldest),
                gone_since=iso_time(since) if since is not None else None,
                hint=f"the config names no sink {sink!r} (an unnamed sink is named by its type "
                "and position: removing or adding one renames those after it); name the sink "
                f"that should have them name = {sink!r}, or send them with `reconciler replay "
                f"--sink NAME --since {iso_time(oldest)}`: retention lets go of them 7 days "
                f"after the name was first found unconfigured ({first}), of an event older "
                f"than keep_events sooner: the oldest {when}",
            ),
        )


async def warn_not_configured(
    config: Config, store: Store, source: Source | None = None
) -> dict[str, int]:
    """Say the accounts and sink names of the store the config no longer names, and a sink
    name now sending elsewhere than its backlog was made for (at start); return the
    undelivered events per sink name no longer configured."""
    from ..sinks import sink_configs, sink_target, target_change

    warn_unconfigured(await unconfigured_accounts(config, store), source)
    pending = await store.outbox.pending_counts()  # once: a large backlog costs its count
    sinks = await unconfigured_sinks(config, store, pending)
    # Recorded here too, not at the prune alone: the hint dates the week from this start.
    found_at = time.time()
    since = await gone_sinks.note(store, sinks, found_at)
    warn_unconfigured_sinks(sinks, config.keep_events_s, since, found_at)
    targets: dict[str, str] = {}

    def now(salt: bytes) -> dict[str, str]:
        targets.update({sc.name: sink_target(sc, salt) for sc in sink_configs(config)})
        return targets

    before = await store.outbox.swap_targets(now)  # said once: recorded from now on
    for sink, target in targets.items():
        if pending.get(sink) and before.get(sink, target) != target:
            was, is_now, change = target_change(before[sink], target)
            log.warning(
                "sinks.sink_target_changed",
                extra=fields(
                    sink=sink,
                    was=was,
                    now=is_now,
                    change=change,
                    undelivered=pending[sink],
                    hint="its undelivered events, made for the sink it was, go to the one it "
                    "is now (an unnamed sink is named by its type and position: adding or "
                    "removing one renames those after it); give each sink a `name`",
                ),
            )
    return {sink: count for sink, (count, _) in sinks.items()}
