"""An account's orders whose next check was planned before the wall clock was stepped back are
checked at their interval from the step, not the size of the step later (a CCV order of a
120 s interval had its next check 3672 s ahead after a 1 h step). A real store; the clock
readings are given, as the coordinator's clock gives them."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.config import CCVConfig, load_config
from reconciler.model import OrderKey
from reconciler.poller.clock_step import ClockSteps
from reconciler.store import Store
from tests.fake_providers import CCV_KEY

NOW = 1_000_000.0
STEP_S = 3600.0


def account(tmp_path: Path) -> CCVConfig:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        '[[ccv]]\nname = "a"\nbase_url = "http://127.0.0.1:9"\n'
        f'api_key = "{CCV_KEY}"\n'
    )
    [config] = load_config(path).ccv
    return config


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db")
    try:
        yield opened
    finally:
        await opened.close()


async def planned(store: Store, plans: dict[str, tuple[float | None, float]]) -> None:
    """Track the orders, each answered `New` with its (interval, next check) at NOW."""
    await store.orders.track("ccv", "a", [(order_id, None) for order_id in plans], NOW)
    keys = {OrderKey("ccv", "a", order_id): plan for order_id, plan in plans.items()}
    loaded = await store.orders.load(keys)
    async with store.transaction():
        states = [(loaded[k]._replace(status="New", version=1), p) for k, p in keys.items()]
        await store.orders.save(loaded, states)


def next_checks(tmp_path: Path) -> dict[str, float]:
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        return dict(conn.execute("SELECT order_id, next_check_at FROM orders").fetchall())


@pytest.mark.parametrize("restart", [False, True])
async def test_a_step_back_costs_an_order_at_most_its_interval(
    tmp_path: Path, store: Store, restart: bool
) -> None:
    config = account(tmp_path)
    longest = config.schedule.max_interval_s
    await planned(
        store,
        {
            "fast": (120.0, NOW + 132.0),  # 120 s and its jitter
            "slow": (longest, NOW + longest * 1.1),
            "unknown": (None, NOW + 60.0),  # no interval kept: max_interval bounds it
        },
    )
    steps = ClockSteps(store, "ccv", config)
    await steps.check(NOW)  # the first read: every check is within its interval
    await steps.check(NOW + 10.0)
    assert next_checks(tmp_path) == {
        "fast": NOW + 132.0,
        "slow": NOW + longest * 1.1,
        "unknown": NOW + 60.0,
    }

    stepped = NOW + 10.0 - STEP_S
    if restart:  # the start after the step (a VM's clock that ran ahead) looks too
        steps = ClockSteps(store, "ccv", config)
    await steps.check(stepped)

    assert next_checks(tmp_path) == {
        "fast": stepped + 120.0,
        "slow": stepped + longest,
        "unknown": NOW + 60.0,
    }
    due = await store.orders.due("ccv", "a", stepped + 120.0, 10, settled_since=0.0)
    assert [s.key.order_id for s in due] == ["fast"]


async def test_a_step_of_less_than_a_second_looks_at_nothing(tmp_path: Path, store: Store) -> None:
    await planned(store, {"fast": (120.0, NOW + 132.0)})
    steps = ClockSteps(store, "ccv", account(tmp_path))
    await steps.check(NOW + 0.5)
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    await steps.check(NOW)

    assert statements == []
