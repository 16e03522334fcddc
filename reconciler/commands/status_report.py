"""`reconciler status [--json]`: one screen of health, read from the store without writing, so it
works beside a running daemon.

What the store cannot tell: a store that is failing right now (a full disk) cannot record that
it is; the daemon's /healthz is the live truth. `status` shows the last failure a writer
recorded when it ended, and the free space beside the database.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

from ..config import Config
from ..json_text import iso_time
from ..json_text import optional_iso_time as ts
from ..model import Source, SourceState
from ..poller.unconfigured import (
    Unconfigured,
    configured,
    unconfigured_accounts,
    unconfigured_sinks,
    unsettled_writes,
)
from ..schedule import rest_ahead
from ..sinks import sink_names
from ..store import Store, commands, gone_sinks, submissions, unsettled
from ..store.files import Unanswered, writer_running
from ..store.health import Episode, file_size
from ..store.passes import LastPass, last_pass
from ..store.submissions import Submission
from .accounts import account_option

# unknown: never polled yet; not_configured: the store follows orders of an account the config
# no longer names, and nothing checks them (poller/unconfigured.py)
AccountHealth = Literal["ok", "failing", "unknown", "not_configured"]


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """One provider account: its health and its orders."""

    source: Source
    account: str
    health: AccountHealth
    failing_since: float | None
    last_success: float | None
    last_error: str | None
    orders: tuple[tuple[str | None, int], ...]  # (status, count); None: no status seen yet
    due: int  # open orders whose next check time has come
    stuck: int  # orders reported stuck and unchanged since
    check_failed: int  # orders whose last check failed (no usable answer)
    configured: bool = True
    uncertain_writes: int = 0  # CCV submits, CCNow actions waiting for a person's word
    queued_writes: int = 0  # CCNow actions to be sent
    # What the uncertain writes are about: CCV submits' references, CCNow actions' order ids
    uncertain_of: tuple[str, ...] = ()
    # What a running writer waits on the provider's answer for: CCV submits' references, CCNow
    # actions' order ids
    sending_of: tuple[str, ...] = ()
    # ` --account NAME` for the commands that settle its writes (accounts.account_option): ""
    # for the config's only account of its source
    account_option: str = ""
    # When its queued CCNow actions are posted next, none being due now (a Retry-After may put
    # it an hour off); None: one is due, or none is queued
    queued_next_at: float | None = None
    # Until when it rests at its provider's word (a Retry-After, schedule.rest_until): no read
    # of it is sent before then; None: no rest still ahead
    resting_until: float | None = None

    @property
    def followed(self) -> int:
        """Orders followed in this account."""
        return sum(n for _, n in self.orders)


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """One sink's undelivered events."""

    name: str
    backlog: int  # pending: will be delivered
    dead: int  # dead-lettered: wait for `replay`
    disabled: str | None  # why its receiver is gone, if it is
    disabled_since: float | None = None  # since when (the 410), if it is
    configured: bool = True  # False: a name the config no longer names, holding events
    # Of such a name: when a start or prune first found it so (None: none has yet), and when
    # retention lets go of its oldest event (store/gone_sinks.py).
    gone_since: float | None = None
    let_go_at: float | None = None


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """The database file."""

    path: Path
    exists: bool
    size_bytes: int
    free_bytes: int | None  # on its file system; None when that cannot be read
    last_failure: Episode | None  # the last failure a writer recorded when it ended


@dataclass(frozen=True, slots=True)
class Status:
    """Everything `status` shows, as read at `time`."""

    time: float
    accounts: tuple[AccountStatus, ...]
    sinks: tuple[SinkStatus, ...]
    store: StoreStatus
    last_pass: LastPass | None  # None: no pass has finished yet
    unconfigured: tuple[Unconfigured, ...] = ()  # accounts of the store the config does not name
    # Sink names the config does not name that hold undelivered events: (name, count, oldest,
    # when a start or prune first found it unconfigured, None: none has yet).
    unconfigured_sinks: tuple[tuple[str, int, float, float | None], ...] = ()


async def gather_status(
    config: Config, store: Store | None, now: float, *, database: int | None = None
) -> Status:
    """Read the status from the store (None: it does not exist yet); `database`: a descriptor
    of its file for asking whether a writer holds it (files.DatabaseFile)."""
    path = config.store_path
    accounts: list[tuple[Source, str]] = [
        *(("ccv", c.name) for c in config.ccv),
        *(("ccnow", c.name) for c in config.ccnow),
    ]
    if store is None:
        return Status(
            now,
            tuple(
                AccountStatus(s, a, "unknown", None, None, None, (), 0, 0, 0) for s, a in accounts
            ),
            tuple(SinkStatus(name, 0, 0, None) for name in sink_names(config)),
            StoreStatus(path, False, 0, _free_bytes(path), None),
            None,
        )
    # One read transaction: read one after another, a submit the daemon records between two
    # reads would be counted by one and not the other (a count without its references, or
    # an uncertain one hidden behind it).
    async with store.read_transaction():
        return await _gather(config, store, now, accounts, database)


def _polled(state: SourceState | None) -> TypeGuard[SourceState]:
    """Whether a pass has answered or failed the account. A record its rest alone made (a
    `ccnow` command line's status read turned away before any pass) says nothing of its health:
    no event did, and /healthz has no success of it (not `healthy`)."""
    return state is not None and (
        state.failing or state.last_success is not None or state.last_failure is not None
    )


async def _gather(
    config: Config,
    store: Store,
    now: float,
    accounts: list[tuple[Source, str]],
    database: int | None,
) -> Status:
    path = config.store_path
    unconfigured = tuple(await unconfigured_accounts(config, store))
    accounts += [(u.source, u.account) for u in unconfigured]
    names = configured(config)
    states = {(s.source, s.account): s for s in await store.sources.states()}
    counts = await store.orders.counts()
    due = await store.orders.due_counts(now, now=now, watched=config.watch_settled())
    stuck = await store.orders.stuck_counts(now, config.alerts.stuck_after_s)
    check_failed = await store.orders.failing_counts()
    writes = await unsettled_writes(store)
    left_submits = tuple(await submissions.interrupted(store))
    left_posts = tuple(await commands.in_state(store, "sending"))
    writing = writer_running(path, left_submits, left_posts, database=database)
    left = Unanswered.split(left_submits, writing)
    sending = _by_account(left.in_flight)
    for key, refs in sending.items():
        uncertain, queued = writes.get(key, (0, 0))
        writes[key] = (max(0, uncertain - len(refs)), queued)
    # CCNow's posts left `sending` are counted queued: one a running writer's post carries is
    # being sent; of one a stopped process left, the next writer makes an adjust uncertain.
    posts = Unanswered.split(left_posts, writing)
    cut_adjusts = [c for c in posts.cut_off if c.action == "adjust"]
    for c, cut in [*((c, False) for c in posts.in_flight), *((c, True) for c in cut_adjusts)]:
        uncertain, queued = writes.get(("ccnow", c.account), (0, 0))
        writes[("ccnow", c.account)] = (uncertain + cut, max(0, queued - 1))
    posted: dict[tuple[Source, str], set[str]] = {}
    for c in posts.in_flight:
        posted.setdefault(("ccnow", c.account), set()).add(c.order_id)
    sending.update((key, tuple(sorted(ids))) for key, ids in posted.items())
    waiting = await _uncertain_of(store, writes, left.cut_off, cut_adjusts)
    queued_next = await unsettled.queued_next(store, now)
    out: list[AccountStatus] = []
    for source, account in accounts:
        st = states.get((source, account))
        health: AccountHealth = "unknown" if not _polled(st) else "failing" if st.failing else "ok"
        if (source, account) not in names:
            health = "not_configured"
        since = None
        if st is not None and st.failing and health != "not_configured":
            # The account's latest source.failed event marks when this episode began
            # (retention keeps it while the account fails); the last failure is the fallback
            # only for a store an older release pruned.
            latest = await store.events.latest_failed(source, account)
            since = st.last_failure if latest is None else latest[0]
        orders = sorted(
            ((status, n) for (s, a, status), n in counts.items() if (s, a) == (source, account)),
            key=lambda item: (item[0] is not None, item[0] or ""),
        )
        out.append(
            AccountStatus(
                source,
                account,
                health,
                since,
                st.last_success if st else None,
                st.last_error if st else None,
                tuple(orders),
                due.get((source, account), 0),
                stuck.get((source, account), 0),
                check_failed.get((source, account), 0),
                (source, account) in names,
                *writes.get((source, account), (0, 0)),
                waiting.get((source, account), ()),
                sending.get((source, account), ()),
                account_option=account_option(config, source, account),
                queued_next_at=queued_next.get(account) if source == "ccnow" else None,
                resting_until=rest_ahead(st.rest_until if st else None, now=now),
            )
        )
    deliveries = await store.outbox.counts()
    disabled = await store.outbox.disabled_since()
    gone = await unconfigured_sinks(config, store, {k: n for k, (n, _) in deliveries.items()})
    first = await gone_sinks.read(store.conn)
    sinks = tuple(
        SinkStatus(name, *deliveries.get(name, (0, 0)), *disabled.get(name, (None, None)))
        for name in sink_names(config)
    ) + tuple(
        SinkStatus(
            name,
            *deliveries.get(name, (n, 0)),
            None,
            configured=False,
            gone_since=first.get(name),
            let_go_at=gone_sinks.let_go_at(first.get(name), oldest, config.keep_events_s, now),
        )
        for name, (n, oldest) in gone.items()
    )
    recorded = await store.recorded_failure()
    found = StoreStatus(path, True, file_size(path), _free_bytes(path), recorded)
    kept = tuple((name, n, oldest, first.get(name)) for name, (n, oldest) in gone.items())
    return Status(now, tuple(out), sinks, found, await last_pass(store), unconfigured, kept)


def _by_account(subs: Sequence[Submission]) -> dict[tuple[Source, str], tuple[str, ...]]:
    """The references of CCV submissions, per account."""
    found: dict[tuple[Source, str], list[str]] = {}
    for sub in subs:
        found.setdefault(("ccv", sub.account), []).append(sub.external_reference)
    return {key: tuple(sorted(refs)) for key, refs in found.items()}


async def _uncertain_of(
    store: Store,
    writes: dict[tuple[Source, str], tuple[int, int]],
    cut_off: Sequence[Submission],
    cut_adjusts: Sequence[commands.Command],
) -> dict[tuple[Source, str], tuple[str, ...]]:
    """The references (CCV) and order ids (CCNow) of the writes that wait for a person's word;
    read only when some do. A submit or an adjust a stopped process left `sending` (`cut_off`,
    `cut_adjusts`) counts: the next writer's start makes it uncertain."""
    found: dict[tuple[Source, str], set[str]] = {}
    if any(uncertain for (source, _), (uncertain, _) in writes.items() if source == "ccv"):
        for account, refs in (await unsettled.uncertain_references(store)).items():
            found.setdefault(("ccv", account), set()).update(refs)
        for key, left in _by_account(cut_off).items():
            found.setdefault(key, set()).update(left)
    if any(uncertain for (source, _), (uncertain, _) in writes.items() if source == "ccnow"):
        for c in [*await commands.in_state(store, "uncertain"), *cut_adjusts]:
            found.setdefault(("ccnow", c.account), set()).add(c.order_id)
    return {key: tuple(sorted(ids)) for key, ids in found.items() if ids}


def _free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _episode(e: Episode | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"since": ts(e.since), "until": ts(e.until), "kind": e.kind, "error": e.error}


def to_json(status: Status) -> dict[str, Any]:
    """Return the stable JSON form of a status."""
    return {
        "time": iso_time(status.time),
        "accounts": [
            {
                "source": a.source,
                "account": a.account,
                "health": a.health,
                "configured": a.configured,
                "failing_since": ts(a.failing_since),
                "last_success": ts(a.last_success),
                "last_error": a.last_error,
                "followed": a.followed,
                "due": a.due,
                "stuck": a.stuck,
                "check_failed": a.check_failed,
                "uncertain_writes": a.uncertain_writes,
                # All of them, where the text's WRITES table names a few: a script settles each
                "uncertain_of": list(a.uncertain_of),
                "sending_writes": len(a.sending_of),
                "sending_of": list(a.sending_of),
                "queued_writes": a.queued_writes,
                "queued_next_at": ts(a.queued_next_at),
                "resting_until": ts(a.resting_until),
                "orders": [{"status": s, "count": n} for s, n in a.orders],
            }
            for a in status.accounts
        ],
        "sinks": [
            {
                "name": s.name,
                "backlog": s.backlog,
                "dead": s.dead,
                "disabled": s.disabled,
                "disabled_since": ts(s.disabled_since),
                "configured": s.configured,
                "gone_since": ts(s.gone_since),
                "let_go_at": ts(s.let_go_at),
            }
            for s in status.sinks
        ],
        "store": {
            "path": str(status.store.path),
            "exists": status.store.exists,
            "size_bytes": status.store.size_bytes,
            "free_bytes": status.store.free_bytes,
            "last_failure": _episode(status.store.last_failure),
        },
        "last_pass": _last_pass(status.last_pass),
    }


def _last_pass(p: LastPass | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "name": p.name,
        "started": iso_time(p.started),
        "finished": iso_time(p.started + p.seconds),
        "seconds": p.seconds,
        "outcome": p.outcome,
        "checked": p.checked,
        "failed": p.failed,
        "events": p.events,
        "failing": list(p.failing),
    }
