"""What the receiver asks of the daemon, and the record of a CCV notification before its 202.

CCV calls a notification URL once, with no body, and never again (NOTES.md): the call is kept
in the store before it is answered, so that a stop or a crash between the answer and its check
(the debounce wait, a busy writer) leaves it to the next start's catch-up. A store that cannot
keep it in time (locked, full, slow) costs the record, never the answer nor the check: CCV would
not call again after a 5xx either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from ..logs import fields
from ..store import StoreError, after_commit
from .health import Health
from .screen import CCVCall

log = logging.getLogger("reconciler.server")

# How long a CCV notification's record may keep its caller waiting: CCV's own timeout is not
# documented, and the store's busy wait is 5 s.
RECORD_TIMEOUT_S = 2.0
# Records still under way past their caller's bound, at most: a store another process holds
# makes each wait up to its busy timeout, and calls keep coming. Past it a call is recorded by
# its check alone (as one whose record failed), so the waiting writes stay bounded.
MAX_RECORDS_UNDER_WAY = 64


class NotificationHub(Protocol):
    """What the receiver asks of the daemon. `received_at` is time.monotonic() at arrival."""

    async def record_ccv_order(self, account: str, order_id: str) -> bool:
        """Keep a notification of a followed CCV order until a check of it answers; return
        whether it was kept (False: an order nobody follows). Raises StoreError."""
        ...

    async def record_ccv_reference(self, account: str, reference: str) -> bool:
        """Record a CCV notification by external reference; return whether it was. Raises
        StoreError."""
        ...

    async def check_ccv_order(
        self, account: str, order_id: str, received_at: float, *, recorded: bool = False
    ) -> None:
        """Check one CCV order now; its events carry `via: notification`. `recorded`: the
        notification was kept when it came (`record_ccv_order`)."""
        ...

    async def check_ccv_reference(
        self, account: str, reference: str, received_at: float, *, recorded: bool = False
    ) -> None:
        """Check the orders with this external reference, or remember it until one is tracked.
        `recorded`: `record_ccv_reference` ran when it came."""
        ...

    async def poll_ccnow(
        self,
        account: str,
        order_ids: Sequence[str],
        received_at: float,
        mentioned: Sequence[str] = (),
    ) -> None:
        """Poll the CCNow pending list and query the hinted order ids: `order_ids` even if
        not followed yet (they then are), `mentioned` only if followed already."""
        ...

    async def health(self) -> Health:
        """Return the health of every source and the outbox backlog."""
        ...

    async def refresh_metrics(self) -> None:
        """Update the gauges that are read from the store (followed orders, backlog)."""
        ...


async def record_ccv(
    hub: NotificationHub,
    named: CCVCall,
    timeout_s: float,
    writes: set[asyncio.Task[bool]],
) -> bool:
    """Record a signed CCV notification; return whether it was recorded within `timeout_s`.
    Never raises for a failed record: CCV would not call again after a 5xx either. A write
    still under way then is left to end, not cancelled: its COMMIT may be under way (a slow
    fsync), and what follows it (the order known to its checks, a settled submit's events and
    lines) must happen once it lands; the caller answers in time, and a write failing later is
    told then. `writes` holds the writes under way; with MAX_RECORDS_UNDER_WAY there, none is
    begun (the check records it)."""
    what = {("order_id" if named.kind == "order" else "reference"): named.value}
    if len(writes) >= MAX_RECORDS_UNDER_WAY:
        not_recorded(named.account, "receipt", f"{len(writes)} records under way", **what)
        return False
    if named.kind == "order":
        write = hub.record_ccv_order(named.account, named.value)
    else:
        write = hub.record_ccv_reference(named.account, named.value)
    committed: list[bool] = []  # whether the stop cancelled it as its COMMIT landed
    task = asyncio.ensure_future(_writing(write, committed))
    writes.add(task)
    left: list[bool] = []  # whether the caller stopped waiting: the write's end tells then
    task.add_done_callback(_ended(writes, left, named.account, what, committed))
    try:
        # Waited for, not awaited: a caller cancelled meanwhile leaves the write to end.
        await asyncio.wait({task}, timeout=timeout_s)
    finally:
        if not task.done():
            left.append(True)
    if not task.done():
        return False  # the check runs all the same, and records it again
    return _outcome(task, named.account, what, committed)


async def _writing(write: Awaitable[bool], committed: list[bool]) -> bool:
    """Run a record's write, noting a cancellation that came as its COMMIT landed: the task
    then ends cancelled all the same, though the record is in the store."""
    try:
        return await write
    except asyncio.CancelledError as exc:
        if after_commit(exc):
            committed.append(True)
        raise


async def end_writes(writes: set[asyncio.Task[bool]], timeout_s: float) -> None:
    """At the stop: let the records still under way end within `timeout_s`, then cancel the
    rest and wait for them to end (the store closes after them): a record not begun is not
    written, one whose COMMIT is under way is what the COMMIT makes it (store/commit.py),
    as is one in another's batch (a check's record, `Notes`) once that batch holds the
    writer; one whose batch waits for the writer leaves it. Each ends as it went, and its
    line says so."""
    if not writes:
        return
    _, late = await asyncio.wait(set(writes), timeout=timeout_s)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late)


def _ended(
    writes: set[asyncio.Task[bool]],
    left: list[bool],
    account: str,
    what: dict[str, str],
    committed: list[bool],
) -> Callable[[asyncio.Task[bool]], None]:
    def ended(task: asyncio.Task[bool]) -> None:
        writes.discard(task)
        if left:
            _outcome(task, account, what, committed)

    return ended


def _outcome(
    task: asyncio.Task[bool], account: str, what: dict[str, str], committed: list[bool]
) -> bool:
    """Return whether the ended write recorded the notification; log one line if it failed,
    or if the stop cancelled it as it was written."""
    if task.cancelled():
        if committed:
            # Kept: the next start's catch-up asks it first, though the stop cut its check.
            log.info(
                "notification.recorded",
                extra=fields(source="ccv", account=account, at="stop", **what),
            )
            return True
        not_recorded(account, "receipt", "stopped before it was written", **what)
        return False
    exc = task.exception()
    if exc is None:
        return task.result()
    if isinstance(exc, StoreError):
        not_recorded(account, "receipt", str(exc), **what)
    else:
        # Not a failure the store names: a bug, told with its traceback.
        log.error(
            "notification.not_recorded",
            exc_info=exc,
            extra=fields(source="ccv", account=account, at="receipt", error=f"{exc!r}", **what),
        )
    return False


def not_recorded(account: str, at: str, error: str, **named: str) -> None:
    """Log a CCV notification the store could not keep (`at` its receipt, or its check): it is
    checked all the same, but a stop or a crash before a check answered loses it."""
    log.warning(
        "notification.not_recorded",
        extra=fields(source="ccv", account=account, at=at, error=error, **named),
    )
