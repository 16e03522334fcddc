"""What a writing command holds, opened in order and closed in reverse: lock, store, HTTP
session, the sinks and their delivery, the reconciler and the accounts' coordinators; and the
check of a store a writer opens (`check_store`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

import aiohttp

from .config import Config
from .config.errors import escaped
from .delivery import TICK_S, Delivery
from .logs import log_handler
from .passes.hint_gate import MAX_WAIT_S
from .poller.coordinators import Coordinators
from .reconcile import Reconciler
from .redact import config_secrets
from .sinks import build_sinks, sink_names
from .sources.codings import ACCEPT_ENCODING
from .sources.connection import WriteAwareConnector
from .sources.http import Gates
from .store import Store, StoreError, WriterLock, WriterLockHeld, rewound, unsettled
from .store.health import file_size
from .store.prune_clock import History
from .store.space import make_space_returnable

if TYPE_CHECKING:
    from .writes.ccnow_actions import ActionSender
    from .writes.in_flight import InFlight
    from .writes.submit import Submitter

# Room in the providers' pool past the accounts' bounds: a connection is let go a moment after
# the gate it was sent under (aiohttp ends a request's body writer first).
POOL_SPARE = 16


def http_session(config: Config) -> aiohttp.ClientSession:
    """Return the HTTP session for the providers. Each account's requests wait for their turn
    in its gate (Gates), never for the pool: the pool holds more than all bounds together, so
    no account waits for another's requests, and the webhook sinks have sessions of their own."""
    limit = sum(c.concurrency for c in config.ccv) + sum(c.concurrency for c in config.ccnow)
    connector = WriteAwareConnector(limit=limit + POOL_SPARE, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        # The providers' APIs use no cookies; a real jar would parse and filter every answer.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Answers are decoded by read_body, from all their Content-Encoding headers, within
        # max_body; aiohttp's decoder reads the last header alone, with no bound.
        auto_decompress=False,
        headers={"Accept-Encoding": ACCEPT_ENCODING},
    )


def sinks_session() -> aiohttp.ClientSession:
    """Return the HTTP session of the webhook sinks, apart from the providers' pool: a slow
    webhook does not hold a provider's request back, nor the other way round."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())


class Runtime:
    """The writer's resources; `async with Runtime(config) as rt` raises StoreLocked when
    another process holds the store."""

    store: Store
    session: aiohttp.ClientSession  # the providers'; `gates` bound each account's requests
    gates: Gates
    delivery: Delivery
    reconciler: Reconciler
    coordinators: Coordinators

    def __init__(
        self,
        config: Config,
        *,
        outbox_tick_s: float = TICK_S,
        hint_wait_s: float = MAX_WAIT_S,
        log: logging.StreamHandler[TextIO] | None = None,
    ) -> None:
        self.config = config
        # The handler the log sink writes events through: by default the one logging was set
        # up with (logs.log_handler), looked up as the sinks are built.
        self.log = log
        self.outbox_tick_s = outbox_tick_s
        self.hint_wait_s = hint_wait_s  # the longest a pass gives way to a hint at a time
        self.lock = WriterLock(config.store_path)
        self.gates = Gates()
        # The writes of a command line (ccv submit, ccnow), made with its first sender: let end
        # when it ends, Ctrl-C included (its task cancelled), before the store and session
        # close; the daemon passes its own and waits on them itself.
        self._in_flight: InFlight | None = None
        # What the history vouches for of the clock (store/prune_clock.py).
        self._history = History()

    async def __aenter__(self) -> Runtime:
        # Whatever fails on the way in, what was opened so far is closed again, in reverse.
        opened = contextlib.AsyncExitStack()
        self.lock.acquire()
        opened.callback(self.lock.release)
        try:
            self.store = await Store.open(
                self.config.store_path, sinks=sink_names(self.config), locked=True
            )
            opened.push_async_callback(self.store.close)
            # What the history vouches for before this process writes any (see `prune`).
            await self._history.read(self.store)
            await make_space_returnable(self.store)
            self.session = http_session(self.config)
            opened.push_async_callback(self.session.close)
            sinks_http = sinks_session()
            opened.push_async_callback(sinks_http.close)
            self.delivery = Delivery(
                self.store,
                build_sinks(self.config, sinks_http, self.log or log_handler()),
                tick_s=self.outbox_tick_s,
                secrets=config_secrets(self.config),
            )
            opened.push_async_callback(self.delivery.close)
            self.reconciler = Reconciler(
                self.config,
                self.store,
                on_commit=self.delivery.committed,
                hint_wait_s=self.hint_wait_s,
            )
            self.delivery.hints = self.reconciler.hints
            self.coordinators = Coordinators.build(
                self.config, self.reconciler, self.session, self.gates
            )
            await self.coordinators.hold_recorded_rests()
            # Every writer settles at its start the writes a stopped process left `sending`
            # (never re-sent unless safe to repeat), before it sends anything: so a submit
            # still `sending` while a process holds the lock is that process's to answer
            # (`status` says SENDING), whichever writer it is (the daemon, `catch-up`,
            # `replay`, the `ccnow` and `ccv submit` command lines).
            if await self.interrupted_writes():  # else the writes are not even loaded
                from .writes.interrupted import settle_interrupted

                await settle_interrupted(self.store, on_commit=self.delivery.committed)
        except BaseException:
            await opened.aclose()
            raise
        self._opened = opened
        return self

    def action_sender(self, in_flight: InFlight | None = None) -> ActionSender:
        """The CCNow action sender of this writer: its store, session, reconciler, delivery
        and the accounts' request bounds (`in_flight`: the daemon's writes, let end at a
        stop)."""
        from .writes.ccnow_actions import ActionSender

        return ActionSender(
            self.store,
            self.session,
            self.reconciler,
            self.config.ccnow,
            on_commit=self.delivery.committed,
            in_flight=in_flight or self._writes(),
            gates=self.gates,
            rests={name: c.rest for name, c in self.coordinators.ccnow.items()},
            secrets=config_secrets(self.config),
        )

    def submitter(self, in_flight: InFlight | None = None, *, give_way: bool = False) -> Submitter:
        """The CCV submit sender of this writer: its store, session, delivery, the accounts'
        request bounds and the API's order id fields (`in_flight`: the daemon's writes, let
        end at a stop; `give_way`: passes under way keep their transactions short for it)."""
        from .writes.submit import Submitter

        api = self.config.api
        return Submitter(
            self.store,
            self.session,
            accounts=self.config.ccv,
            receiver=self.config.receiver,
            order_id_fields=api.ccv_order_id_fields if api is not None else ("orderId", "id"),
            on_commit=self.delivery.committed,
            gate=self.reconciler.hints if give_way else None,
            in_flight=in_flight or self._writes(),
            gates=self.gates,
            secrets=config_secrets(self.config),
        )

    async def interrupted_writes(self) -> bool:
        """Whether a stopped process left writes `sending`, or a database that went back left
        CCNow actions open (writes/interrupted.py settles them; asked first, so that a
        catch-up with none does not load the writes)."""
        return (
            await unsettled.left_sending(self.store) or await rewound.noted(self.store) is not None
        )

    async def prune(self) -> None:
        """Delete what the retention window lets go (store/retention.py), but nothing when the
        clock is past what the history vouches for by more than the window: a clock far ahead
        would prune it all; after a jump seen while this process runs, cut at that bound, not
        at the clock's word (`store.prune_clock_ahead`, store/prune_clock.py)."""
        receiver = self.config.receiver
        await self._history.prune(
            self.store,
            sinks=self.store.events.sinks,
            keep_s=self.config.keep_events_s,
            now=time.time(),
            watched=self.config.watch_settled(),
            remember_ref_s=receiver.remember_ref_s if receiver is not None else None,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._in_flight is not None:
                from .writes.in_flight import writes_stop_s

                # A write sent ends (its answer recorded, its event raised) within its own
                # bound, as at the daemon's stop: cut off, it would stay `sending`.
                self._in_flight.stop(writes_stop_s(self.config))
                await self._in_flight.wait()
            # After the writes: their status reads may have been asked to wait. Leaving on an
            # error, that error is what the caller is told (the store's own failure was logged).
            with contextlib.suppress(StoreError) if exc is not None else contextlib.nullcontext():
                await self.coordinators.record_rests()
        finally:
            await self._opened.aclose()

    def _writes(self) -> InFlight:
        """This process's writes (made with its first sender)."""
        if self._in_flight is None:
            from .writes.in_flight import InFlight

            self._in_flight = InFlight()
        return self._in_flight


@contextlib.asynccontextmanager
async def writer_unless_held(config: Config) -> AsyncIterator[Runtime | None]:
    """The writer's runtime for the block, or None when another process holds the store's
    writer lock at the start. Only that refusal means "nothing was done here": a database
    busy later in the block (after a request was sent) is raised as the error it is."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            runtime: Runtime | None = await stack.enter_async_context(Runtime(config))
        except WriterLockHeld:
            runtime = None
        yield runtime


# quick_check reads every page: about a second per 100 MiB on a modest disk. Up to this size it
# runs before READY=1; a larger store starts unchecked (its commands must stay fast at 10^6
# orders, so only the pages a statement reads are checked, by SQLite itself).
INTEGRITY_CHECK_MAX_BYTES = 64 << 20


async def check_store(store: Store, *, max_bytes: int = INTEGRITY_CHECK_MAX_BYTES) -> None:
    """Refuse a damaged store at start (StoreError, one line with what to do), when the check
    is cheap: a store of up to `max_bytes`."""
    if file_size(store.path) > max_bytes:
        return
    try:
        problems = await store.quick_check()
    except StoreError:
        # A page the check could not read at all (a table's): as damaged as what it reports.
        episode = store.health.current
        if episode is None or episode.kind != "corrupt":
            raise
        problems = [episode.error]
    if problems:
        # SQLite's report spans lines (`*** in database main ***` and a line a page): escaped,
        # as a config error's text is, it stays the one line journald keeps together.
        raise StoreError(
            f"database {store.path} is damaged ({escaped(problems[0])}): restore it from a "
            f"backup, or recover what is readable with `sqlite3 {store.path} .recover`"
        )
