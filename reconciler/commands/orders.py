"""`track`, `untrack`, `orders`: following orders and reading the snapshot."""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from ..config import Config
from ..exits import EX_OK, DataError, UsageError
from ..logs import fields, say
from ..model import Source
from ..order_view import order_json
from ..redact import config_secrets, given_secrets
from ..store import Store, StoreError, WriterLock, order_pages, references, withdraw
from ..store import submissions as store_submissions
from ..store.files import DatabaseFile, writer_running
from ..terminal import shown
from .accounts import account_names, choose_account
from .input import order_ids, read_track_file, reference_given
from .paged import JsonList, Table
from .progress import progress
from .status_text import status_word
from .store_open import open_store, peek_store
from .track_submits import and_more, resolve_submissions

log = logging.getLogger("reconciler.cli")


async def track_command(config: Config, args: argparse.Namespace) -> int:
    """Start following orders."""
    source: Source = args.source
    if source == "ccv":
        account = await settling_account(config, source, args.account, reference=args.ref)
    else:
        account = choose_account(config, source, args.account)
    if args.ref is not None and source != "ccv":
        # Bad input, as a file's `ID,REF` line for CCNow is (65), and said alike: the count
        # of ids was never the trouble.
        raise DataError("--ref: external references are for CCV orders")
    if args.ref is not None and (len(args.ids) != 1 or args.from_file):
        raise UsageError("--ref takes exactly one CCV order id")
    if not args.ids and args.from_file is None:
        raise UsageError("give order ids or --from-file")
    secrets = given_secrets(config_secrets(config))
    if args.ref is not None:
        # given=False: a reference stored before outer white space was refused is tracked, and
        # its uncertain submit settled, as it was stored.
        reference_given("--ref", args.ref, secrets, given=False, tracked=True)
    ids = order_ids(source, args.ids, secrets)
    orders: list[tuple[str, str | None]] = [(oid, args.ref) for oid in ids]
    header: dict[str, str] = {}
    if args.from_file is not None:
        read = read_track_file(args.from_file, source, secrets)
        orders.extend(read.orders)
        if read.header is not None:
            header["header_skipped"] = read.header
    from ..sinks import sink_names

    # Every sink the config names: settling an uncertain submit stores an event.
    # Made before the store, closed after it: its descriptor of the database, if it takes the
    # lock to settle a submit, must outlive the store's connection (store/files.py).
    lock = WriterLock(config.store_path, connected=True)
    store = await Store.open(config.store_path, sinks=sink_names(config))
    try:
        with progress("track", len(orders)) as advance:
            if source == "ccv":
                added = await _track_ccv(
                    store, account, orders, relink=args.relink, advance=advance
                )
            else:
                added = await store.orders.track(
                    source, account, orders, time.time(), progress=advance
                )
        log.info(
            "orders.tracked",
            extra=fields(
                source=source,
                account=account,
                given=len(orders),
                new_or_updated=added,
                **header,
            ),
        )
        if source != "ccv":
            return EX_OK
        if settles := [(oid, ref) for oid, ref in orders if ref is not None]:
            return await resolve_submissions(config, store, lock, account, settles)
    finally:
        try:
            await store.close()
        finally:
            lock.close()
    return EX_OK


async def _track_ccv(
    store: Store,
    account: str,
    orders: Sequence[tuple[str, str | None]],
    *,
    relink: bool,
    advance: Callable[[int], None],
) -> int:
    """Track CCV orders, refusing to move one followed under one reference to another (its
    notifications and events would follow the other), unless `relink` says so: then its old
    reference stays its alias, as when CCV renames one, and a warning names both. One given a
    reference another followed order carries is tracked with it, and a warning says so."""
    try:
        added, moved, carried = await references.track(
            store, account, orders, time.time(), relink=relink, progress=advance
        )
    except references.FollowedElsewhere as exc:
        key, current, ref = exc.moved[0]
        more = and_more(exc.moved)
        raise DataError(
            f"order {shown(key.order_id)} is followed under reference {shown(current)}, not "
            f"{shown(ref)}{more}: nothing tracked (--relink moves it, its old reference kept as "
            "an alias)"
        ) from None
    references.log_relinked(log, account, moved)
    references.log_carried(log, account, carried)
    if carried:
        oid, ref, others = carried[0]
        more = and_more(carried)
        say(
            f"reconciler: warning: reference {shown(ref)} is carried by order "
            f"{shown(others[0])} too, which reconciler follows: order {shown(oid)} is tracked "
            f"with it{more} (a submit of it is refused until CCV cancels them)",
            logging.WARNING,
        )
    return added


async def untrack_command(config: Config, args: argparse.Namespace) -> int:
    """Stop following orders."""
    source: Source = args.source
    account = await _untrack_account(config, source, args.account)
    ids = order_ids(source, args.ids, given_secrets(config_secrets(config)))
    from ..sinks import sink_names

    # Every sink the config names: withdrawing a CCNow order's queued commands stores events.
    # Made before the store, closed after it, as `track`'s (store/files.py).
    lock = WriterLock(config.store_path, connected=True)
    try:
        store = await open_store(config, sinks=sink_names(config))
        if store is None:
            log.info("orders.untracked", extra=fields(source=source, removed=0))
            return EX_OK
        out = withdraw.Withdrawn([], [])
        try:
            if source == "ccnow":
                await _settle_left_sending(store, lock)
                # Its queued commands go with it: one sent later would follow the order again.
                by, now = withdraw.BY_UNTRACK, time.time()
                removed, out = await withdraw.untrack(store, account, ids, by=by, now=now)
            else:
                removed = await store.orders.untrack(source, account, ids)
        finally:
            await store.close()
    finally:
        lock.close()
    for c in out.withdrawn:
        print(f"{c.order_id} {c.action} (command {c.id}): {c.answer}")
    for c in out.sending:
        print(f"{c.order_id} {c.action} (command {c.id}): {withdraw.ASKED}")
    withdrawn = {"withdrawn": [c.id for c in out.withdrawn]} if out.withdrawn else {}
    sending = {"sending": [c.id for c in out.sending]} if out.sending else {}
    log.info(
        "orders.untracked", extra=fields(source=source, removed=removed, **withdrawn, **sending)
    )
    return EX_OK


async def _settle_left_sending(store: Store, lock: WriterLock) -> None:
    """As every writer does at its start, settle what a stopped process left `sending` (a
    CCNow action queued again, to be withdrawn now), when no process holds the store: one
    still `sending` is then no post in flight. A holder settled those at its start: one
    `sending` now is its own post, whose end the withdrawal waits for. The lock, taken, is
    held until the withdrawal is committed (the caller closes it); asked only when something
    is left `sending`, so that an untrack beside a daemon starting does not hold its start."""
    from ..store import StoreLocked, unsettled
    from ..writes.interrupted import settle_interrupted

    if not await unsettled.left_sending(store):
        return
    try:
        lock.acquire()
    except StoreLocked:
        return
    await settle_interrupted(store)


async def _untrack_account(config: Config, source: Source, name: str | None) -> str | None:
    """The account whose rows `untrack` removes; None: every account's rows of the ids."""
    configured = account_names(config, source)
    if name is None and len(configured) <= 1:
        # Also of an account no longer configured; with several configured, the id may be
        # another account's order.
        return None
    if name is not None and name in configured:
        return name
    # An account the config no longer names keeps its orders until they are untracked, and
    # untracking asks no provider: it needs no credentials, only the name.
    elsewhere = [a for a in await _followed_accounts(config, source) if a not in configured]
    if name is not None and name in elsewhere:
        return name
    known = ", ".join(configured) + (
        f"; not configured: {', '.join(elsewhere)}" if elsewhere else ""
    )
    if name is None:
        raise UsageError(f"several {source} accounts ({known}): give --account")
    if not configured and not elsewhere:
        raise UsageError(f"no [{source}] account is configured")
    raise UsageError(f"no {source} account named {name!r} ({known.removeprefix('; ')})")


async def settling_account(
    config: Config, source: Source, name: str | None, *, reference: str | None = None
) -> str:
    """The account whose uncertain writes a person's word settles (`track ccv --ref`, `ccnow
    resolve`): one `choose_account` finds, or one the config no longer names whose writes
    still wait in the store. The word asks no provider: it needs no credentials, only the name.
    """
    if name is not None and name not in account_names(config, source):
        # Opened before the store and closed after it (files.DatabaseFile): a writer whose
        # lock file was deleted is still seen running, by its lock on the database file.
        database = DatabaseFile(config.store_path)
        try:
            async with peek_store(config) as store:
                try:
                    settles = store is not None and await _settles(
                        store, source, name, reference, database.fd
                    )
                except (StoreError, sqlite3.Error):
                    settles = False
        finally:
            database.close()
        if settles:
            return name
    return choose_account(config, source, name)


async def _settles(
    store: Store, source: Source, name: str, reference: str | None, database: int | None
) -> bool:
    """Whether a word under the unconfigured account `name` settles one of its writes. For CCV
    the word is an order tracked with the reference of one of its uncertain submits: any other
    order would be followed under a name nothing polls. `database`: see `writer_running`."""
    from ..poller.unconfigured import unsettled_writes

    if source == "ccv":
        if reference is None:
            return False
        if await store_submissions.uncertain(store, name, [reference]):
            return True
        # One a killed `ccv submit` left `sending` is made uncertain first (track_command); a
        # running writer's is not: it would never be settled here. The lock is asked only
        # when one of this reference is left.
        left = tuple(
            s
            for s in await store_submissions.interrupted(store)
            if s.account == name and s.external_reference == reference
        )
        return bool(left) and not writer_running(store.path, left, database=database)
    return (await unsettled_writes(store)).get((source, name), (0, 0))[0] > 0


async def _followed_accounts(config: Config, source: Source) -> list[str]:
    """The accounts of `source` the store follows orders of, by name (none if it cannot say)."""
    from ..poller.unconfigured import followed_accounts

    async with peek_store(config) as store:
        if store is None:
            return []
        try:
            followed = await followed_accounts(store)
        except StoreError:
            return []
    return sorted(a for s, a in followed if s == source)


_COLUMNS = ("source", "account", "order_id", "status", "external_reference", "last_changed")


async def orders_command(config: Config, args: argparse.Namespace) -> int:
    """Print the snapshot as it is read, a page at a time: the first lines come at once
    (`orders | head`), and memory holds one page of any number of orders."""
    store = await open_store(config, readonly=True)
    watched, now = config.watch_settled(), time.time()
    if store is None:
        (JsonList() if args.json else Table(_COLUMNS)).end()
        return EX_OK
    try:
        await print_orders(
            store, args.source, args.status, json_out=args.json, watched=watched, now=now
        )
    finally:
        await store.close()
    return EX_OK


async def print_orders(
    store: Store,
    source: str | None,
    status: str | None,
    *,
    json_out: bool,
    watched: Mapping[tuple[str, str], float],
    now: float,
    page: int = order_pages.PAGE,
) -> None:
    """Print the snapshot (`json_out`: the JSON array `orders --json` always wrote) a page
    of `page` orders at a time, each page flushed before the next is read."""
    out = JsonList() if json_out else Table(_COLUMNS)
    async for states in order_pages.pages(store, source, status, page=page):
        rows = [order_json(s, watched=watched, now=now) for s in states]
        if isinstance(out, Table):
            out.add([{**r, "status": status_word(r["status"], "-")} for r in rows])
        else:
            out.add(rows)
        sys.stdout.flush()  # the page, now: a pipe's buffer would hold it back
    out.end()
