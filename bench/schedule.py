"""Benchmark: requests and detection delay of the adaptive schedule against fixed-interval polling.

A pure simulation (no I/O) through `reconciler.schedule.plan`. A population is followed
for a simulated week from its first check: most orders are idle (one change at a random moment
of the week), a few are active (a change every 1-3 h on average, exponential gaps, for one or
two days, then they settle). The detection delay of a change is the time from the change to the
first check after it.

Fair comparison: the fixed interval is the LONGEST one whose p95 delay for active orders is no
worse than the adaptive schedule's, so the request rates are compared at equal-or-better p95
delay for fixed polling. Ratio = adaptive requests per hour / fixed requests per hour.

    python bench/schedule.py [--orders 10000] [--days 7] [--active 0.05] [--check]
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.config import ScheduleConfig
from reconciler.model import OrderKey, OrderState
from reconciler.schedule import plan

TARGET = 0.25
HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class Order:
    """One simulated order: when it changes status, and whether it is one of the active ones."""

    active: bool
    changes: tuple[float, ...]  # seconds after tracking, ascending


def population(
    n: int, *, days: float, active_share: float, idle_changes: int, seed: int
) -> list[Order]:
    """Return n orders: `active_share` of them busy for a day or two, the rest idle."""
    rng = random.Random(seed)
    horizon = days * DAY
    orders = []
    for i in range(n):
        if i < round(n * active_share):
            busy_until = rng.uniform(1, 2) * DAY
            mean_gap = rng.uniform(1, 3) * HOUR
            times: list[float] = []
            t = rng.expovariate(1 / mean_gap)
            while t < min(busy_until, horizon):
                times.append(t)
                t += rng.expovariate(1 / mean_gap)
            orders.append(Order(True, tuple(times)))
        else:
            idle = sorted(rng.uniform(0, horizon) for _ in range(idle_changes))
            orders.append(Order(False, tuple(idle)))
    return orders


def adaptive(
    orders: Sequence[Order], schedule: ScheduleConfig, *, horizon: float, seed: int
) -> tuple[int, list[float], list[float]]:
    """Poll every order by `plan`; return requests made and delays (active, idle)."""
    rng = random.Random(seed)
    requests = 0
    delays: tuple[list[float], list[float]] = ([], [])
    for n, order in enumerate(orders):
        state = OrderState(OrderKey("ccv", "default", f"order-{n}"), tracked_at=0.0)
        seen = 0  # changes seen so far; the status word is just the count
        t = 0.0
        # Requests count within the horizon; checks go on after it until every change is seen,
        # so that a change late in the period still gets its (long) delay counted.
        while t < horizon or seen < len(order.changes):
            requests += t < horizon
            now_seen = bisect.bisect_right(order.changes, t)
            changed = state.status is None or now_seen != seen
            for change in order.changes[seen:now_seen]:
                delays[0 if order.active else 1].append(t - change)
            seen = now_seen
            # As the diff records it: first sight, and the time of the last change seen.
            state = state._replace(
                status=f"s{seen}",
                last_checked=t,
                first_seen=t if state.first_seen is None else state.first_seen,
                last_changed=t if changed else state.last_changed,
            )
            interval, t = plan(
                state, changed=changed, schedule=schedule, now=t, jitter=rng.random()
            )
            state = state._replace(interval_s=interval, next_check_at=t)
    return requests, delays[0], delays[1]


def fixed_delays(orders: Sequence[Order], interval: float, *, seed: int) -> list[float]:
    """Return the delays of active orders' changes when polled every `interval` seconds."""
    rng = random.Random(seed)
    out = []
    for order in orders:
        phase = rng.uniform(0, interval)  # orders are not polled in lockstep
        if order.active:
            for change in order.changes:
                out.append(phase + math.ceil((change - phase) / interval) * interval - change)
    return out


def p95(values: Sequence[float]) -> float:
    """Return the 95th percentile."""
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def longest_fixed_interval(orders: Sequence[Order], target_p95: float, *, seed: int) -> float:
    """Return the longest whole-second interval whose active p95 delay is <= target_p95."""
    low, high = 1.0, max(2.0, target_p95 * 2)
    while high - low > 1:
        mid = math.floor((low + high) / 2)
        if p95(fixed_delays(orders, mid, seed=seed)) <= target_p95:
            low = mid
        else:
            high = mid
    return low


def minutes(seconds: float) -> str:
    """Render seconds as minutes for the explanation."""
    return f"{seconds / 60:.1f} min"


def main() -> int:
    """Run the simulation and print its summary line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=10_000)
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--active", type=float, default=0.05, help="share of active orders")
    p.add_argument(
        "--idle-changes",
        type=int,
        default=1,
        metavar="N",
        help="status changes of each idle order in the period (default 1)",
    )
    p.add_argument("--min-interval", type=float, default=60.0, metavar="SECONDS")
    p.add_argument("--max-interval", type=float, default=6 * HOUR, metavar="SECONDS")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = p.parse_args()

    horizon = args.days * DAY
    orders = population(
        args.orders,
        days=args.days,
        active_share=args.active,
        idle_changes=args.idle_changes,
        seed=args.seed,
    )
    schedule = ScheduleConfig(min_interval_s=args.min_interval, max_interval_s=args.max_interval)
    requests, active, idle = adaptive(orders, schedule, horizon=horizon, seed=args.seed)
    adaptive_rate = requests / (horizon / HOUR)
    adaptive_p95 = p95(active)
    interval = longest_fixed_interval(orders, adaptive_p95, seed=args.seed)
    fixed = fixed_delays(orders, interval, seed=args.seed)
    fixed_rate = len(orders) * HOUR / interval
    ratio = adaptive_rate / fixed_rate
    missed = ratio > TARGET

    n_active = sum(o.active for o in orders)
    print(
        f"population: {len(orders)} orders over {args.days:g} days; {n_active} active "
        f"({len(active)} changes), {len(orders) - n_active} idle "
        f"({args.idle_changes} change(s) each); "
        f"adaptive min {minutes(args.min_interval)}, max {minutes(args.max_interval)}"
    )
    print(
        f"fixed interval {minutes(interval)}: the longest whose p95 delay for active orders "
        f"is no worse than adaptive's"
    )
    print(
        f"active delay: median adaptive={statistics.median(active):.0f}s "
        f"fixed={statistics.median(fixed):.0f}s; idle delay p95 adaptive="
        + (f"{p95(idle):.0f}s" if len(idle) > 1 else "-")
        + f" fixed={interval * 0.95:.0f}s (expected)"
    )
    print(
        f"schedule: adaptive={adaptive_rate:.0f} req/h fixed={fixed_rate:.0f} req/h "
        f"ratio={ratio:.2f} p95 adaptive={adaptive_p95:.0f}s fixed={p95(fixed):.0f}s "
        f"(target ratio <= {TARGET})" + (" MISSED" if missed else "")
    )
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
