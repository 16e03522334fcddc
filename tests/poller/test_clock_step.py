"""An account's orders whose next check was planned before the wall clock was stepped back are
checked when they were planned to be (a step seen at runtime, its size known) or at their
interval from the step (a start's), not the size of the step later (a CCV order of a 120 s
interval had its next check 3672 s ahead after a 1 h step). A real store; the clock readings
are given, as the coordinator's clock gives them."""

from __future__ import annotations

import logging
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.config import CCVConfig, load_config
from reconciler.model import OrderKey, OrderState
from reconciler.poller.clock_step import ClockSteps
from reconciler.schedule import plan
from reconciler.store import Store
from tests.fake_providers import CCV_KEY

NOW = 1_000_000.0
STEP_S = 3600.0


def account(tmp_path: Path, more: str = "") -> CCVConfig:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        '[[ccv]]\nname = "a"\nbase_url = "http://127.0.0.1:9"\n'
        f'api_key = "{CCV_KEY}"\n{more}'
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


async def planned(
    store: Store, plans: dict[str, tuple[float | None, float]], *, failures: int = 0
) -> dict[str, OrderState]:
    """Track the orders, each answered `New` with its (interval, next check) at NOW (or its
    checks failing `failures` times since); return what is stored."""
    await store.orders.track("ccv", "a", [(order_id, None) for order_id in plans], NOW)
    keys = {OrderKey("ccv", "a", order_id): at for order_id, at in plans.items()}
    loaded = await store.orders.load(keys)
    async with store.transaction():
        states = [
            (
                loaded[k]._replace(
                    status="New", version=1, last_changed=NOW, failure_streak=failures
                ),
                p,
            )
            for k, p in keys.items()
        ]
        await store.orders.save(loaded, states)
    saved = await store.orders.load(keys)
    return {k.order_id: saved[k] for k in keys}


class Monotonic:
    """The clock that is never stepped (time.monotonic), as a test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


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
    monotonic = Monotonic()
    steps = ClockSteps(store, "ccv", config, monotonic=monotonic)
    await steps.check(NOW)  # the first read: every check is within its interval
    monotonic.now = 10.0
    await steps.check(NOW + 10.0)
    assert next_checks(tmp_path) == {
        "fast": NOW + 132.0,
        "slow": NOW + longest * 1.1,
        "unknown": NOW + 60.0,
    }

    stepped = NOW + 10.0 - STEP_S
    if restart:  # the start after the step (a VM's clock that ran ahead) looks too
        steps = ClockSteps(store, "ccv", config, monotonic=monotonic)
    await steps.check(stepped)

    checks = next_checks(tmp_path)
    if restart:  # a step before the start has no size: its interval from now, jittered
        assert stepped + 120.0 <= checks["fast"] < stepped + 132.0
        assert stepped + longest <= checks["slow"] < stepped + longest * 1.1
        assert checks["unknown"] == NOW + 60.0
    else:  # seen at runtime: each when it was planned to be
        assert checks == {
            "fast": NOW + 132.0 - STEP_S,
            "slow": NOW + longest * 1.1 - STEP_S,
            "unknown": NOW + 60.0 - STEP_S,
        }
    due = await store.orders.due("ccv", "a", stepped + 132.0, 10, settled_since=0.0)
    assert [s.key.order_id for s in due] == (["fast"] if restart else ["unknown", "fast"])


async def test_a_step_of_less_than_a_second_looks_at_nothing(tmp_path: Path, store: Store) -> None:
    await planned(store, {"fast": (120.0, NOW + 132.0)})
    steps = ClockSteps(store, "ccv", account(tmp_path))
    await steps.check(NOW + 0.5)
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    await steps.check(NOW)

    assert statements == []


async def test_a_step_back_while_the_due_reads_stop_is_seen_when_they_start_again(
    tmp_path: Path, store: Store
) -> None:
    # The account's last due read at NOW, then it fails for two hours (a probe now and then,
    # no due read); a probe's answer plans its order an hour and a bit ahead, and the clock is
    # put back by an hour after it. The read after the recovery finds the clock an hour later
    # than at the last one: only the clock that is never stepped says it went back.
    config = account(tmp_path)
    monotonic = Monotonic()
    steps = ClockSteps(store, "ccv", config, monotonic=monotonic)
    await steps.check(NOW)  # the last due read
    monotonic.now = 5400.0  # the probe's answer, planned at its interval then
    await planned(store, {"probed": (3600.0, NOW + 5400.0 + 3700.0)})

    monotonic.now = 7200.0  # then the recovery's first due read, the clock an hour back
    recovered = NOW + 7200.0 - STEP_S
    await steps.check(recovered)

    assert next_checks(tmp_path) == {"probed": recovered + 1900.0}


async def test_orders_planned_again_at_a_start_keep_the_jitter_of_a_plan(
    tmp_path: Path, store: Store
) -> None:
    # Planned together before a step back, they come due over a tenth of their interval after
    # the start that sees it, as `plan` spreads them: not all at one instant, a burst of
    # requests to the provider.
    config = account(tmp_path)
    await planned(store, {f"o{n}": (120.0, NOW + STEP_S + 130.0) for n in range(20)})
    await ClockSteps(store, "ccv", config, rng=random.Random(7)).check(NOW)

    times = list(next_checks(tmp_path).values())
    assert all(NOW + 120.0 <= at < NOW + 132.0 for at in times)
    assert len(set(times)) == 20
    assert max(times) - min(times) > 6.0


async def test_a_start_plans_nothing_again_that_the_planner_itself_may_set(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # `New` pinned at 30 s, under min_interval (60 s): a failing check of such an order is
    # planned again no sooner than min_interval (`plan`); a circuit breaker postpones an order
    # it left unasked by up to 110 % of the account's poll interval (CCVCoordinator._postpone).
    config = account(tmp_path, 'status_intervals = { New = "30s" }\n')
    schedule = config.schedule
    assert schedule.status_intervals_s["New"] == 30.0 < schedule.min_interval_s == 60.0
    stored = await planned(store, {"failing": (30.0, NOW + 33.0)}, failures=3)
    _, failing_at = plan(stored["failing"], changed=False, schedule=schedule, now=NOW, jitter=0.99)
    assert failing_at == NOW + 60.0 * 1.099
    async with store.transaction():
        await store.conn.execute(
            "UPDATE orders SET next_check_at = ? WHERE order_id = 'failing'", (failing_at,)
        )
    await planned(store, {"postponed": (30.0, NOW + 33.0)})
    postponed_at = NOW + config.poll_interval_s * 1.099
    async with store.transaction():
        await store.orders.postpone("ccv", "a", [("postponed", postponed_at)])

    with caplog.at_level(logging.WARNING, logger="reconciler.poller"):
        await ClockSteps(store, "ccv", config).check(NOW)  # a start's first read

    assert next_checks(tmp_path) == {"failing": failing_at, "postponed": postponed_at}
    assert [r.getMessage() for r in caplog.records] == []


@pytest.mark.parametrize(("poll", "step"), [("5m", 190.0), ("1h", STEP_S)])
async def test_a_step_back_seen_at_runtime_moves_every_check_back_by_it(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture, poll: str, step: float
) -> None:
    # `AwaitingPayment` pinned at 2 min, the account polled every `poll`: a step back of
    # `step` is seen against the monotonic clock and every check planned before it comes due
    # when it was planned to, each with its own jitter, whatever the poll interval (the
    # longest the planner sets, which bounded a start's look, left them `step` late).
    config = account(tmp_path, f'poll_interval = "{poll}"\n')
    await planned(store, {"a": (120.0, NOW + 125.0), "b": (120.0, NOW + 131.0)})
    monotonic = Monotonic()
    steps = ClockSteps(store, "ccv", config, monotonic=monotonic)
    await steps.check(NOW)
    monotonic.now = 5.0
    stepped = NOW + 5.0 - step

    with caplog.at_level(logging.WARNING, logger="reconciler.poller"):
        await steps.check(stepped)

    assert next_checks(tmp_path) == {"a": stepped + 120.0, "b": stepped + 126.0}
    [line] = caplog.records
    assert line.getMessage() == "orders.clock_stepped_back"
    assert line.__dict__["fields"]["orders"] == 2


async def test_a_step_back_the_store_could_not_follow_is_followed_at_the_next_read(
    tmp_path: Path, store: Store
) -> None:
    # The store refuses the write (busy: another process holds it) when the step is seen:
    # the next read sees the step still, and follows it.
    config = account(tmp_path)
    await planned(store, {"a": (120.0, NOW + 125.0)})
    monotonic = Monotonic()
    steps = ClockSteps(store, "ccv", config, monotonic=monotonic)
    await steps.check(NOW)
    with sqlite3.connect(tmp_path / "reconciler.db") as other:
        other.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON orders BEGIN SELECT RAISE(ABORT, 'busy'); END"
        )
    monotonic.now = 5.0
    with pytest.raises(sqlite3.DatabaseError, match="busy"):
        await steps.check(NOW + 5.0 - STEP_S)
    with sqlite3.connect(tmp_path / "reconciler.db") as other:
        other.execute("DROP TRIGGER refuse")

    monotonic.now = 6.0
    await steps.check(NOW + 6.0 - STEP_S)

    assert next_checks(tmp_path) == {"a": NOW + 125.0 - STEP_S}


async def test_a_failing_order_planned_again_at_a_start_waits_at_least_min_interval(
    tmp_path: Path, store: Store
) -> None:
    # `New` pinned at 30 s, under min_interval (60 s), its checks failing: `plan` retries it
    # no sooner than min_interval, and neither does a start that plans it again after a step.
    config = account(tmp_path, 'status_intervals = { New = "30s" }\n')
    await planned(store, {"failing": (30.0, NOW + STEP_S)}, failures=2)
    await ClockSteps(store, "ccv", config, rng=random.Random(7)).check(NOW)

    [at] = next_checks(tmp_path).values()
    assert NOW + 60.0 <= at < NOW + 66.0
