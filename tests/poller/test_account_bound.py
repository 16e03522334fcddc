"""Each account's `concurrency` bounds all its requests in flight together: a pass's, every
notification's check, its probes and its writes; and one account's requests never wait for
another's (README "Bounded", "Isolation")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from reconciler.config import Config, load_config
from reconciler.events import Event
from reconciler.metrics import Metrics
from reconciler.passes.report import PassReport
from reconciler.poller.coordinators import Coordinators
from reconciler.runtime import Runtime
from reconciler.server.hub import Hub
from reconciler.store.errors import StoreError, StoreFull
from reconciler.writes.ccnow_actions import ActionSender, build
from reconciler.writes.submit import Submitter
from tests.fake_providers import CCNOW_CLIENT_ID, CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV


def bound_config(
    tmp_path: Path, *, ccv: dict[str, FakeCCV] | None = None, ccnow: FakeCCNow | None = None
) -> Config:
    """A config of one CCV account per fake (`concurrency = 1`, no retries), and a CCNow one."""
    parts = [f'[store]\npath = "{tmp_path / "reconciler.db"}"\n']
    for name, fake in (ccv or {}).items():
        parts.append(
            f'[[ccv]]\nname = "{name}"\nbase_url = "{fake.base_url}"\napi_key = "{CCV_KEY}"\n'
            'concurrency = 1\ntimeout = "2s"\nretries = 0\n'
        )
    if ccnow is not None:
        parts.append(
            f'[[ccnow]]\nname = "default"\nurl = "{ccnow.url}"\nclient_id = "{CCNOW_CLIENT_ID}"\n'
            f'password = "{CCNOW_PASSWORD}"\nconcurrency = 1\ntimeout = "2s"\nretries = 0\n'
        )
    parts.append(f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "events.jsonl"}"\n')
    path = tmp_path / "reconciler.toml"
    path.write_text("\n".join(parts))
    path.chmod(0o600)
    return load_config(path)


@contextlib.asynccontextmanager
async def daemon_parts(config: Config) -> AsyncIterator[tuple[Runtime, Hub]]:
    """The daemon's runtime (its HTTP session, the accounts' bounds, its coordinators) and the
    hub its receiver hands notifications to."""
    async with Runtime(config) as rt:
        yield rt, Hub(config, rt.coordinators, rt.store, rt.delivery, Metrics())


async def statuses(rt: Runtime, source: str, account: str) -> dict[str, str | None]:
    return {
        s.key.order_id: s.status
        for s in await rt.store.orders.snapshot(source)
        if s.key.account == account
    }


async def test_a_burst_of_notifications_keeps_to_the_accounts_concurrency(tmp_path: Path) -> None:
    # 24 notifications at once, concurrency 1: one status request in flight at a time, each
    # order asked once (no false timeout retried or lost), every check answered.
    ids = [f"N-{n}" for n in range(24)]
    async with FakeCCV() as fake:
        fake.orders = dict.fromkeys(ids, "Processing")
        fake.delay_s = 0.02
        config = bound_config(tmp_path, ccv={"a": fake})
        async with daemon_parts(config) as (rt, hub):
            await rt.store.orders.track("ccv", "a", [(i, None) for i in ids], 1.0)
            await asyncio.gather(*(hub.check_ccv_order("a", i, time.monotonic()) for i in ids))
            seen = await statuses(rt, "ccv", "a")
    assert fake.max_in_flight == 1
    assert sorted(s.order_id or "" for s in fake.requests) == sorted(ids)
    assert seen == dict.fromkeys(ids, "Processing")


async def test_a_slow_accounts_burst_does_not_hold_another_accounts_checks_back(
    tmp_path: Path,
) -> None:
    # Account a's CCV does not answer while 40 of its notifications are checked; b's three
    # checks are answered meanwhile, each asking b's CCV once (none waits for a's requests).
    a_ids = [f"A-{n}" for n in range(40)]
    b_ids = ["B-1", "B-2", "B-3"]
    async with FakeCCV() as slow, FakeCCV() as other:
        slow.orders = dict.fromkeys(a_ids, "Processing")
        other.orders = dict.fromkeys(b_ids, "Shipped")
        slow.hold = asyncio.Event()
        config = bound_config(tmp_path, ccv={"a": slow, "b": other})
        async with daemon_parts(config) as (rt, hub):
            await rt.store.orders.track("ccv", "a", [(i, None) for i in a_ids], 1.0)
            await rt.store.orders.track("ccv", "b", [(i, None) for i in b_ids], 1.0)
            a_checks = [
                asyncio.ensure_future(hub.check_ccv_order("a", i, time.monotonic())) for i in a_ids
            ]
            try:
                await slow.wait_until(lambda: slow.in_flight >= 1)
                b_checks = (hub.check_ccv_order("b", i, time.monotonic()) for i in b_ids)
                await asyncio.wait_for(asyncio.gather(*b_checks), 10)
                b_seen = await statuses(rt, "ccv", "b")
                a_waiting = sum(not check.done() for check in a_checks)
            finally:
                slow.hold.set()
                await asyncio.gather(*a_checks)
            a_seen = await statuses(rt, "ccv", "a")
    assert b_seen == dict.fromkeys(b_ids, "Shipped")
    assert sorted(s.order_id or "" for s in other.requests) == b_ids
    assert a_waiting == len(a_ids)  # a's checks were all still waiting for a's CCV
    assert slow.max_in_flight == 1
    assert a_seen == dict.fromkeys(a_ids, "Processing")


async def test_ccnow_queries_and_action_posts_keep_to_the_accounts_concurrency(
    tmp_path: Path,
) -> None:
    # Notification-style checks of single orders and a ship, all at once: one post in flight.
    ids = [f"39{n}-10-1142" for n in range(6)]
    async with FakeCCNow() as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        fake.delay_s = 0.02
        config = bound_config(tmp_path, ccnow=fake)
        async with daemon_parts(config) as (rt, _hub):
            coordinator = rt.coordinators.ccnow["default"]
            sender = ActionSender(rt.store, rt.session, rt.reconciler, config.ccnow, gates=rt.gates)
            await rt.store.orders.track("ccnow", "default", [(i, None) for i in ids], 1.0)
            checks = [coordinator.check([i], via="notification") for i in ids]
            ship = sender.take(build(config.ccnow[0], "ship", [ids[0]]))
            reports, taken = await asyncio.gather(asyncio.gather(*checks), ship)
    assert fake.max_in_flight == 1
    assert [r.failed for r in reports] == [0] * len(ids)
    assert [c.state for c in taken.rows] == ["succeeded"]
    assert [(order_id, action) for order_id, action, _ in fake.actions] == [(ids[0], "ship")]


def test_a_part_that_sends_requests_cannot_be_built_without_the_processs_gates(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    # A part built with a bound of its own would add its `concurrency` to the account's.
    config = bound_config(tmp_path, ccv={"default": fake_ccv}, ccnow=fake_ccnow)
    session, store, writer = cast(Any, None), cast(Any, None), cast(Any, None)
    parts: list[Callable[[], object]] = [
        lambda: Coordinators.build(config, writer, session),  # type: ignore[call-arg]
        lambda: ActionSender(store, session, writer, config.ccnow),  # type: ignore[call-arg]
        lambda: Submitter(store, session, accounts=config.ccv, receiver=None),  # type: ignore[call-arg]
    ]
    for part in parts:
        with pytest.raises(TypeError, match="gates"):
            part()


async def test_a_slow_accounts_catch_up_does_not_hold_another_accounts_pass_back(
    tmp_path: Path,
) -> None:
    # Account a (first in the config) has a CCV that does not answer; b's pass of the same
    # catch-up finds its order and writes its event meanwhile, and the catch-up's report, once
    # a answers, counts both accounts' checks.
    a_ids = [f"A-{n}" for n in range(8)]
    async with FakeCCV() as slow, FakeCCV() as other:
        slow.orders = dict.fromkeys(a_ids, "Processing")
        other.orders = {"B-1": "Shipped"}
        slow.hold = asyncio.Event()
        config = bound_config(tmp_path, ccv={"a": slow, "b": other})
        async with daemon_parts(config) as (rt, _hub):
            await rt.store.orders.track("ccv", "a", [(i, None) for i in a_ids], 1.0)
            await rt.store.orders.track("ccv", "b", [("B-1", None)], 1.0)
            b_event = asyncio.Event()

            def committed(events: Sequence[Event]) -> None:
                if any(e.account == "b" and e.order_id == "B-1" for e in events):
                    b_event.set()

            rt.store.events_committed = committed
            catch_up = asyncio.ensure_future(rt.coordinators.catch_up())
            try:
                await slow.wait_until(lambda: slow.in_flight >= 1)
                await asyncio.wait_for(b_event.wait(), 5)
                a_waiting = slow.in_flight  # a's first request, not answered yet
                ended_first = catch_up.done()
            finally:
                slow.hold.set()
                report = await catch_up
    assert not ended_first and a_waiting == 1  # b's event came while a's pass waited for it
    assert (report.checked, report.failed, report.events) == (9, 0, 9)
    assert slow.max_in_flight == 1


async def test_a_catch_up_pass_that_raises_lets_the_other_accounts_passes_end(
    tmp_path: Path,
) -> None:
    # Account a's pass fails at once (as on a fault of the code); b's, still waiting for its
    # CCV, is not cancelled nor left running behind the catch-up: it ends, its order is
    # written, and then the catch-up raises a's error.
    async with FakeCCV() as fails, FakeCCV() as slow:
        slow.orders = {"B-1": "Shipped"}
        slow.hold = asyncio.Event()
        config = bound_config(tmp_path, ccv={"a": fails, "b": slow})
        async with daemon_parts(config) as (rt, _hub):
            await rt.store.orders.track("ccv", "b", [("B-1", None)], 1.0)

            async def fault(*, via: str) -> PassReport:
                raise RuntimeError("a's fault")

            rt.coordinators.ccv["a"].full_pass = fault  # type: ignore[method-assign]
            catch_up = asyncio.ensure_future(rt.coordinators.catch_up())
            try:
                await slow.wait_until(lambda: slow.in_flight >= 1)
                waited_for_b = not catch_up.done()
            finally:
                slow.hold.set()
            with pytest.raises(RuntimeError, match="a's fault"):
                await catch_up
            b_seen = await statuses(rt, "ccv", "b")
    assert waited_for_b
    assert b_seen == {"B-1": "Shipped"}


async def test_every_error_of_a_catch_ups_passes_is_raised_or_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Only the first was raised: b's bug, raised beside a's failing store, left no trace (the
    # command exits 74, the daemon's start-up pass returns quietly on a store's failure).
    caplog.set_level(logging.ERROR, logger="reconciler")
    async with FakeCCV() as fake:
        config = bound_config(tmp_path, ccv={"a": fake, "b": fake, "c": fake})
        async with daemon_parts(config) as (rt, _hub):
            faults = {"a": StoreError("a's store"), "b": TypeError("b's bug"), "c": StoreFull("c")}
            for name, exc in faults.items():

                async def fault(*, via: str, exc: Exception = exc) -> PassReport:
                    raise exc

                rt.coordinators.ccv[name].full_pass = fault  # type: ignore[method-assign]
            with pytest.raises(StoreError, match="a's store"):
                await rt.coordinators.catch_up()
    logged = [
        (r.__dict__["fields"]["name"], r.exc_info[1] if r.exc_info else None)
        for r in caplog.records
        if r.getMessage() == "catch_up.pass_failed"
    ]
    # The bug with its traceback; the store's failure is logged by the store's health.
    assert logged == [("ccv/b", faults["b"]), ("ccv/c", None)]
