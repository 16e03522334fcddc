"""The demo's CCNow shipments: it ships as many as it says, whatever the lifecycle does
between its look at an order and the post."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reconciler.commands.demo import DEMO_SHIPMENTS, demo_config, hold_for_shipment, ship_some
from reconciler.runtime import Runtime
from reconciler.sandbox import Sandbox, SandboxOptions
from reconciler.store.commands import get as get_commands
from tests.conftest import Clock, free_port


class MovesOnOnceSeen(Sandbox):
    """A sandbox whose first CCNow order asked for goes on to `completed` right after it was
    seen pending, as the lifecycle did on a loaded machine before the demo's post."""

    moved: str | None = None

    def status(self, source: str, order_id: str) -> str:
        seen = super().status(source, order_id)
        if source == "ccnow" and self.moved is None:
            self.moved = order_id
            self.set_status(source, order_id, "completed")
        return seen


async def test_an_order_moved_on_before_its_shipment_is_replaced_by_another(
    tmp_path: Path,
) -> None:
    # The refused shipment was counted: the demo shipped one order fewer than it meant to, and
    # on a loaded machine none at all (its feed then showed no `pending -> mark_shipped`).
    sandbox = MovesOnOnceSeen(SandboxOptions(orders=DEMO_SHIPMENTS + 2, advance=False))
    url = await sandbox.start("127.0.0.1", 0)
    try:
        for order_id in sandbox.ccnow_order_ids():
            sandbox.set_status("ccnow", order_id, "pending")
        config = demo_config(url, tmp_path / "demo.db", free_port(), free_port())
        async with Runtime(config) as rt:
            await rt.store.orders.track(
                "ccnow", "default", [(oid, None) for oid in sandbox.ccnow_order_ids()], 0.0
            )
            await rt.coordinators.startup_pass()  # the pass that sees them pending
            await asyncio.wait_for(ship_some(sandbox, rt, config, every_s=0.0), 60)
            commands = await get_commands(rt.store, list(range(1, 100)))
    finally:
        await sandbox.stop()
    assert sandbox.moved is not None
    refused = [c for c in commands if c.state == "refused"]
    assert [c.order_id for c in refused] == [sandbox.moved]
    shipped = [c.order_id for c in commands if c.state == "succeeded"]
    assert len(shipped) == DEMO_SHIPMENTS, commands
    assert all(sandbox.status("ccnow", order_id) == "mark_shipped" for order_id in shipped)


async def test_the_orders_the_demo_ships_wait_pending_for_it_however_late_it_comes() -> None:
    # The lifecycle runs from the sandbox's start; on a loaded machine the daemon's first look
    # came after every CCNow order had gone past pending, and the demo shipped none.
    clock = Clock(0.0)
    sandbox = Sandbox(SandboxOptions(orders=12, seed=1, speed=3.0), now=clock)
    try:
        held = hold_for_shipment(sandbox)
        others = [oid for oid in sandbox.ccnow_order_ids() if oid not in held]
        before = {oid: sandbox.status("ccnow", oid) for oid in others}
        clock.now += 3600
        sandbox.advance()
        assert len(held) == DEMO_SHIPMENTS
        assert {sandbox.status("ccnow", oid) for oid in held} == {"pending"}
        assert any(sandbox.status("ccnow", oid) != before[oid] for oid in others)  # it ran
        # Shipped, an order goes on with the lifecycle.
        sandbox.set_status("ccnow", held[0], "mark_shipped")
        clock.now += 3600
        sandbox.advance()
        assert sandbox.status("ccnow", held[0]) != "mark_shipped"
    finally:
        await sandbox.stop()


async def test_the_demo_ships_the_orders_it_held_before_any_other(tmp_path: Path) -> None:
    # The held orders were left to the store's order: one not picked stayed pending for the
    # whole demo (its summary showed `ccnow pending: 1`, the sandbox the order stuck).
    sandbox = Sandbox(SandboxOptions(orders=DEMO_SHIPMENTS + 4, advance=False))
    url = await sandbox.start("127.0.0.1", 0)
    try:
        ids = sandbox.ccnow_order_ids()
        for order_id in ids:
            sandbox.set_status("ccnow", order_id, "pending")
        held = ids[-DEMO_SHIPMENTS:]  # the last the store lists
        config = demo_config(url, tmp_path / "demo.db", free_port(), free_port())
        async with Runtime(config) as rt:
            await rt.store.orders.track("ccnow", "default", [(oid, None) for oid in ids], 0.0)
            await rt.coordinators.startup_pass()
            await asyncio.wait_for(ship_some(sandbox, rt, config, every_s=0.0, first=held), 60)
            commands = await get_commands(rt.store, list(range(1, 100)))
    finally:
        await sandbox.stop()
    assert sorted(c.order_id for c in commands if c.state == "succeeded") == sorted(held)
