"""An order a submit tracked while its CCV account fails gets its first check within seconds
(DESIGN, "CCV submit"), not once the account's backoff runs out (minutes, up to an hour): the
due tick of a resting account asks it all the same, as the account's probe, so that its answer
recovers the account when CCV answers again; each such order once, one a tick, so that submits
during an outage do not hammer the account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import ReceiverConfig, load_config
from reconciler.config.secret import Secret
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.ccv import PROBE_ORDER_ID
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.writes.submit import Submitter
from tests.conftest import Clock, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCV_KEY, Reply

RECEIVER = ReceiverConfig(
    "127.0.0.1", 8080, "https://integrator.example/reconciler", Secret("s" * 32)
)
STEP_S = 2.5  # the due tick's period (min_interval / 2)
KNOWN = "11111111-2222-3333-4444-555555555555"  # an order followed before the outage


@dataclass
class Account:
    coordinator: CCVCoordinator
    submitter: Submitter
    store: Store
    clock: Clock

    async def kinds(self) -> list[str]:
        return [e.type for e in await self.store.events.history() if e.order_id is None]

    async def tick(self) -> None:
        self.clock.now += STEP_S
        await self.coordinator.tick_due()

    async def submit(self) -> str:
        result = await self.submitter.submit("default", submit_body())
        assert result.status == 201 and result.order_id is not None
        return result.order_id


@pytest.fixture
async def account(
    tmp_path: Path, fake: FakeCCVWrites, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Account]:
    """A CCV account (poll_interval 5 minutes: the backoff) that CCV's 503s failed."""
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    extra = 'poll_interval = "5m"\nmin_interval = "5s"'
    config = load_config(write_config(tmp_path, ccv=fake, ccv_extra=extra))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    fake.orders[KNOWN] = "Processing"
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            gates = Gates()
            coordinator = Coordinators.build(config, writer, session, gates).ccv["default"]
            submitter = Submitter(
                store,
                session,
                accounts=config.ccv,
                receiver=RECEIVER,
                gates=gates,
                clock=clock,
            )
            await store.orders.track("ccv", "default", [(KNOWN, None)], clock.now)
            await coordinator.full_pass(via="catch-up")
            fake.always = Reply(503, '{"message": "Service Unavailable"}', "application/json")
            clock.now += 60
            await coordinator.full_pass(via="catch-up")
            it = Account(coordinator, submitter, store, clock)
            assert await it.kinds() == ["source.failed"]
            yield it
    finally:
        await store.close()


def asked(fake: FakeCCVWrites) -> list[str]:
    return [r.order_id or "" for r in fake.requests if r.order_id != PROBE_ORDER_ID]


async def test_an_order_submitted_once_ccv_answers_again_is_checked_within_seconds(
    account: Account, fake: FakeCCVWrites
) -> None:
    account.clock.now += 10  # well within the account's backoff (5 minutes)
    fake.always = None  # CCV answers again; nothing asked it since
    order_id = await account.submit()
    await account.tick()
    # Its first check went out, and its answer recovered the account.
    assert fake.requests_for(order_id) != []
    assert await account.kinds() == ["source.failed", "source.recovered"]
    [state] = [s for s in await account.store.orders.snapshot() if s.key.order_id == order_id]
    assert state.status == "Processing"


async def test_orders_submitted_while_ccv_fails_are_each_asked_once_one_a_tick(
    account: Account, fake: FakeCCVWrites
) -> None:
    account.clock.now += 10
    submitted = [await account.submit() for _ in range(3)]
    firsts: list[str] = []
    for _ in range(3):
        before = len(asked(fake))
        await account.tick()
        # One first check a tick (its request tried again once: `retries`; a check that fails
        # for the account may ask a witness too, an answered order, not another submitted one).
        firsts += dict.fromkeys(i for i in asked(fake)[before:] if i in submitted)
        assert len(firsts) == len(set(firsts))
    assert sorted(firsts) == sorted(submitted)
    after = len(fake.requests)
    for _ in range(20):  # nearly a minute more, still within the backoff
        await account.tick()
    # None of them again, nor any other order: the account rests.
    assert fake.requests[after:] == []
    assert await account.kinds() == ["source.failed"]


async def test_the_resting_tick_finds_a_submitted_order_without_walking_the_never_checked_ones(
    account: Account, fake: FakeCCVWrites
) -> None:
    # Orders tracked (`reconciler track`) and not checked yet are due at once too, as many as a
    # bulk import: while the account rests none is asked, and each resting tick (every few
    # seconds, for up to an hour) looked for a submitted order among all of them, through the
    # due index and a table row each: half a second at a million, holding the store's one
    # connection. The submitted orders' first check is planned apart from them.
    ids = [f"00000000-0000-0000-0000-{n:012d}" for n in range(20_000)]
    await account.store.orders.track("ccv", "default", [(i, None) for i in ids], account.clock.now)
    account.clock.now += 10
    fake.always = None  # CCV answers again
    order_id = await account.submit()
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    await account.store.conn.set_progress_handler(step, 100)
    try:
        await account.tick()
    finally:
        await account.store.conn.set_progress_handler(None, 100)  # type: ignore[arg-type]  # clears it
    assert fake.requests_for(order_id) != []
    assert await account.kinds() == ["source.failed", "source.recovered"]
    # Some thousands of SQLite's steps for the tick's own reads and writes, not one a row or
    # more of every order tracked and never checked (the walk took 20 times as many).
    assert steps * 100 < 100_000, steps


async def test_a_submit_naming_an_order_tracked_and_never_checked_plans_its_first_check_so(
    account: Account,
) -> None:
    # `reconciler track` first (the id known from elsewhere), then the submit's answer names it:
    # its first check is a submitted order's, also while the account rests.
    order_id = "99999999-0000-0000-0000-000000000000"
    await account.store.orders.track("ccv", "default", [(order_id, None)], account.clock.now)
    orders = account.store.orders
    async with account.store.transaction():
        with orders.tracking_submitted("ccv", "default", order_id, "REF-1", account.clock.now) as t:
            await account.store.conn.execute(*t)
    [found] = await subs.unchecked(account.store, "default", 5, account.coordinator.settled_since())
    assert found.key.order_id == order_id
