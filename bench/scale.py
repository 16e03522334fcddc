"""Benchmark: what a store of 10^4, 10^5 and 10^6 followed orders costs when few are due.

For each size a store is built directly with SQL (untimed): N CCV orders, all but `--open` of
them in an end state (a year of business), the open ones being real orders of the sandbox
(lifecycle off), checked recently and not due for hours. Then, for that store:

- bytes per order: the database file (checkpointed) divided by N (orders only, no events);
- tick, scrape and status: the median time, in this process, of what runs on every scheduler
  tick (the account's health and its due orders), every scrape of /metrics
  (`Daemon.refresh_metrics`), every /healthz (`Daemon.health`) and `reconciler status`;
- idle: `reconciler run` (with a receiver) does its start-up pass over the open orders, then its
  VmRSS and CPU time are sampled over `--idle-seconds`;
- catch-up: `reconciler catch-up` of the open orders while the sandbox answers every status
  request after `--latency` seconds, against the latency bound open x latency / concurrency
  (ratio = bound / the catch-up's own `seconds`; target >= 0.9). Right after it, a bare client
  (bench/catchup.py's, on the same event loop) asks the same orders the same way: what this
  machine reaches at that moment, whatever the code.

With `--only store` the daemon parts are skipped (no sandbox; the open orders get made-up ids):
that part runs on any checkout, to compare the query costs of two versions. With `--only
catch-up` only the catch-up and its bare client run (no tick costs, no idle daemon): the
catch-up's figure in a minute per size instead of ten, `--repeat` times per size.

    python bench/scale.py [--sizes 10000,100000,1000000] [--open 2000] [--idle-seconds 30]
                          [--latency 0.05] [--concurrency 16] [--only store|catch-up]
                          [--repeat 1] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catchup import REPO, baseline, child_env, open_ids, sandbox_orders, sandbox_process
from idle import RECEIVER_SECRET, STOP_TIMEOUT_S, Idle, watch, write_config

from reconciler import eventloop
from reconciler.commands.status_report import gather_status
from reconciler.config import Config, load_config
from reconciler.daemon import Daemon
from reconciler.runtime import Runtime
from reconciler.store import Store
from reconciler.systemd import Notifier

BYTES_TARGET = 1500
RSS_TARGET_MB = 150.0
CPU_TARGET_PERCENT = 1.0
LATENCY_TARGET = 0.9
COST_SPREAD_TARGET = 2.0  # the largest size's tick/scrape/status time over the smallest's
STARTUP_TIMEOUT_S = 600.0
ROWS_PER_INSERT = 20_000
DAY_S = 86_400.0
ORDER_SQL = (
    "INSERT INTO orders (source, account, order_id, status, external_reference, first_seen, "
    "last_changed, last_checked, end_state, version, next_check_at, interval_s, tracked_at) "
    "VALUES ('ccv', 'default', ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
)


def end_state_rows(n: int, now: float) -> Any:
    """Yield n orders completed during the last year (order ids and references like CCV's)."""
    for i in range(n):
        at = now - 365 * DAY_S * (n - i) / n
        oid = f"5c0ffee0-0000-4000-8000-{i:012d}"
        yield (oid, "Completed", f"shop-{i:09d}", at, at + 600, at + 900, 1, math.inf, None, at)


def open_rows(ids: Sequence[str], statuses: dict[str, str], now: float) -> list[tuple[Any, ...]]:
    """Return the open orders: checked a minute ago, due in six hours."""
    return [
        (oid, statuses.get(oid, "Processing"), None, now - 3600, now - 3600, now - 60, 0,
         now + 6 * 3600, 6 * 3600.0, now - 3600)
        for oid in ids
    ]  # fmt: skip


def build_store(db: Path, size: int, ids: Sequence[str], statuses: dict[str, str]) -> None:
    """Create the schema through the store, then fill it with plain SQL (fast, untimed)."""
    asyncio.run(_create(db))
    now = time.time()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # building only; the daemon sets its own
        rows = end_state_rows(size - len(ids), now)
        while chunk := [r for _, r in zip(range(ROWS_PER_INSERT), rows, strict=False)]:
            conn.execute("BEGIN")
            conn.executemany(ORDER_SQL, chunk)
            conn.execute("COMMIT")
        conn.execute("BEGIN")
        conn.executemany(ORDER_SQL, open_rows(ids, statuses, now))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def _create(db: Path) -> None:
    store = await Store.open(db)
    await store.close()


def store_bytes(db: Path) -> int:
    """Return the bytes of the store and its WAL."""
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


@dataclass(frozen=True)
class Costs:
    """Median seconds of one tick, one scrape, one /healthz and one `status`."""

    tick: float
    scrape: float
    health: float
    status: float


async def _median(call: Callable[[], Awaitable[Any]], budget_s: float = 2.0) -> float:
    """Return the median time of `call`, repeated within about `budget_s` (3 to 200 times)."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 3 or (len(times) < 200 and time.perf_counter() - started < budget_s):
        t = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def measure_costs(config: Config, concurrency: int) -> Costs:
    """Time what a tick, a scrape, /healthz and `status` run, on the store of `config`."""
    async with Runtime(config) as rt:
        daemon = Daemon(config, rt, Notifier(None))
        store = rt.store

        async def tick() -> None:
            await store.sources.state("ccv", "default")
            now = time.time()
            watch = config.ccv[0].schedule.watch_settled_s
            since = now - watch
            await store.orders.due("ccv", "default", now, concurrency * 4, settled_since=since)

        return Costs(
            tick=await _median(tick),
            scrape=await _median(daemon.hub.refresh_metrics),
            health=await _median(daemon.hub.health),
            status=await _median(lambda: gather_status(config, store, time.time())),
        )


def checked_since(db: Path, since: float) -> int:
    """Return how many open orders were checked after `since` (read through the due index)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        sql = (
            "SELECT count(*) FROM orders INDEXED BY orders_due "
            "WHERE end_state = 0 AND next_check_at >= 0 AND last_checked > ?"
        )
        return int(conn.execute(sql, (since,)).fetchone()[0])
    except sqlite3.OperationalError:  # locked for a moment
        return -1
    finally:
        conn.close()


def idle_daemon(config_path: Path, db: Path, base_url: str, expected: int, seconds: float) -> Idle:
    """Run `reconciler run` until its start-up pass checked every open order, then watch it."""
    argv = [sys.executable, "-m", "reconciler", "--config", str(config_path), "run"]
    started = time.time()
    with (db.parent / "run.log").open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=child_env(RECONCILER_RECEIVER_SECRET=RECEIVER_SECRET),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            while checked_since(db, started) < expected:
                if proc.poll() is not None:
                    raise SystemExit(f"reconciler run exited with {proc.returncode}")
                if time.time() - started > STARTUP_TIMEOUT_S:
                    raise SystemExit("start-up pass did not finish in time")
                time.sleep(0.5)
            time.sleep(2.0)  # the pass's last commit and its outbox wake-up
            return watch(proc.pid, base_url, seconds)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def set_faults(base_url: str, spec: str) -> None:
    """Set the sandbox's faults (for example a fixed latency, `slow:ccv=0.05`)."""
    req = urllib.request.Request(base_url + "/_sandbox/faults", data=spec.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()


def catch_up_seconds(config_path: Path, workdir: Path, expected: int) -> tuple[float, float]:
    """Run `reconciler catch-up`; return the seconds its `catch-up.done` line reports and the
    CPU seconds (user + system) of the whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    log = workdir / "catch-up.log"
    argv = [sys.executable, "-m", "reconciler", "--config", str(config_path), "catch-up"]
    with log.open("wb") as err:
        code = subprocess.call(
            argv,
            cwd=REPO,
            env=child_env(RECONCILER_RECEIVER_SECRET=RECEIVER_SECRET),
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if code != 0:
        raise SystemExit(f"reconciler catch-up exited with {code} (see {log})")
    for line in reversed(log.read_text().splitlines()):
        record = json.loads(line.lstrip("<0123456789>"))
        if record.get("message") == "catch-up.done":
            if (record["checked"], record["failed"]) != (expected, 0):
                raise SystemExit(f"expected {expected} orders checked: {record}")
            return float(record["seconds"]), cpu
    raise SystemExit(f"no catch-up.done line in {log}")


def bare_seconds(base_url: str, ids: Sequence[str], concurrency: int) -> float:
    """Return the seconds a bare client takes to ask the same orders, on reconciler's loop."""
    started = time.perf_counter()
    answered = eventloop.run(baseline(base_url, ids, concurrency))
    seconds = time.perf_counter() - started
    if answered != len(ids):
        raise SystemExit(f"the bare client got {answered} answers of {len(ids)}")
    return seconds


@dataclass(frozen=True)
class Result:
    """One size's figures (idle and catch-up are None with --only store, costs and idle with
    --only catch-up)."""

    size: int
    open_orders: int
    bytes_per_order: float
    costs: Costs | None
    idle: Idle | None
    catch_up_s: float | None
    bare_s: float | None  # the bare client over the same orders, just after
    bound_s: float


def measure(workdir: Path, size: int, args: argparse.Namespace, base_url: str | None) -> Result:
    """Build a store of `size` orders and measure it."""
    sub = workdir / f"size-{size}"
    sub.mkdir()
    if base_url is None:
        ids = [f"0be11a00-0000-4000-8000-{i:012d}" for i in range(args.open)]
        statuses: dict[str, str] = {}
        config_path = sub / "reconciler.toml"
        config_path.write_text(
            f'[store]\npath = "{sub / "reconciler.db"}"\n\n[ccv]\nbase_url = '
            f'"http://127.0.0.1:9"\napi_key = "unused"\nconcurrency = {args.concurrency}\n'
        )
    else:
        found = sandbox_orders(base_url)
        ids = open_ids(found)[: args.open]
        statuses = {o["id"]: o["status"] for o in found}
        config_path = write_config(sub, base_url, args.concurrency)
    db = sub / "reconciler.db"
    started = time.perf_counter()
    build_store(db, size, ids, statuses)
    os.sync()  # the build's writes reach the disk now, not during what is timed
    print(f"size {size}: built in {time.perf_counter() - started:.0f}s", flush=True)
    per_order = store_bytes(db) / size
    bound = len(ids) * args.latency / args.concurrency
    costs, idle = None, None
    if args.only != "catch-up":
        costs = asyncio.run(measure_costs(load_config(config_path), args.concurrency))
        print(f"size {size}: {per_order:.0f} bytes/order {_costs_text(costs)}", flush=True)
    if base_url is None:
        return Result(size, len(ids), per_order, costs, None, None, None, bound)
    if args.only != "catch-up":
        idle = idle_daemon(config_path, db, base_url, len(ids), args.idle_seconds)
        print(f"size {size}: idle rss={idle.rss_mb:.1f}MB cpu={idle.cpu_percent:.2f}%", flush=True)
    else:
        # The idle daemon's start-up pass checked every open order once: so does this one.
        catch_up_seconds(config_path, sub, len(ids))
    runs: list[tuple[float, float]] = []
    set_faults(base_url, f"slow:ccv={args.latency}")
    try:
        for _ in range(args.repeat):
            seconds, cpu = catch_up_seconds(config_path, sub, len(ids))
            bare = bare_seconds(base_url, ids, args.concurrency)
            runs.append((seconds, bare))
            print(
                f"size {size}: catch-up {len(ids)} orders {seconds:.2f}s (process CPU {cpu:.2f}s) "
                f"bare client {bare:.2f}s "
                f"bound {bound:.2f}s load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        set_faults(base_url, "")
    seconds = statistics.median(r[0] for r in runs)
    bare = statistics.median(r[1] for r in runs)
    shutil.rmtree(sub, ignore_errors=True)
    return Result(size, len(ids), per_order, costs, idle, seconds, bare, bound)


def _costs_text(c: Costs) -> str:
    ms = 1000
    return (
        f"tick={c.tick * ms:.2f}ms scrape={c.scrape * ms:.2f}ms health={c.health * ms:.2f}ms "
        f"status={c.status * ms:.2f}ms"
    )


def summary(results: Sequence[Result], args: argparse.Namespace) -> tuple[str, bool]:
    """Return the summary lines and whether a target was missed."""
    lines, missed = [], False
    for r in results:
        line = f"scale: orders={r.size} bytes/order={r.bytes_per_order:.0f}"
        missed |= r.bytes_per_order >= BYTES_TARGET
        if r.costs is not None:
            line += f" {_costs_text(r.costs)}"
        if r.idle is not None:
            line += (
                f" idle rss={r.idle.rss_mb:.1f}MB cpu={r.idle.cpu_percent:.2f}% "
                f"requests={r.idle.requests}"
            )
            missed |= r.idle.rss_mb >= RSS_TARGET_MB or r.idle.cpu_percent >= CPU_TARGET_PERCENT
        if r.catch_up_s is not None and r.bare_s is not None:
            ratio = r.bound_s / r.catch_up_s
            line += (
                f" catch-up={r.open_orders}x{args.latency * 1000:.0f}ms/{args.concurrency} "
                f"{r.catch_up_s:.2f}s bound={r.bound_s:.2f}s ratio={ratio:.2f}"
                f" bare={r.bare_s:.2f}s ratio={r.bound_s / r.bare_s:.2f}"
            )
            missed |= ratio < LATENCY_TARGET
        lines.append(line)
    first, last = results[0].costs, results[-1].costs
    spread = math.nan
    if first is not None and last is not None:
        spread = max(
            getattr(last, name) / getattr(first, name)
            for name in ("tick", "scrape", "health", "status")
        )
        missed |= spread > COST_SPREAD_TARGET
    lines.append(
        f"scale: sizes={','.join(str(r.size) for r in results)} cost spread={spread:.2f} "
        f"(targets: bytes/order < {BYTES_TARGET}, rss < {RSS_TARGET_MB:.0f}MB, "
        f"cpu < {CPU_TARGET_PERCENT:g}%, catch-up ratio >= {LATENCY_TARGET}, "
        f"spread <= {COST_SPREAD_TARGET:g})" + (" MISSED" if missed else "")
    )
    return "\n".join(lines), missed


def main() -> int:
    """Run the benchmark and print its summary lines."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated")
    p.add_argument("--open", type=int, default=2000, help="open orders in each store")
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--latency", type=float, default=0.05, help="seconds per sandbox answer")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument(
        "--only",
        choices=["store", "catch-up"],
        help="store: skip the daemon parts (no sandbox); catch-up: only the catch-up",
    )
    p.add_argument("--repeat", type=int, default=1, help="catch-ups per size (median shown)")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if sizes[0] <= args.open:
        p.error("every size must be larger than --open")

    # The in-process measures load the same config as the daemon: secrets from the environment.
    os.environ.update(child_env(RECONCILER_RECEIVER_SECRET=RECEIVER_SECRET))
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    try:
        if args.only == "store":
            results = [measure(workdir, size, args, None) for size in sizes]
        else:
            # The sandbox has more orders than asked for: some of them are in an end state.
            with sandbox_process(args.open * 3, workdir / "sandbox.log") as base_url:
                results = [measure(workdir, size, args, base_url) for size in sizes]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text, missed = summary(results, args)
    print(text)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
