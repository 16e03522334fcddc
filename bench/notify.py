"""Benchmark: a CCV notification -> its event in a jsonl sink, with the daemon quiet and while a
catch-up runs.

The sandbox (lifecycle off) runs in a process of its own and `reconciler run` in another, with
long schedules (nothing falls due by itself) and a jsonl sink. For each of N distinct open CCV
orders the script moves the order to another status in the sandbox (untimed), then POSTs the
order's signed notification URL on a new connection, as CCV would, and times until the order's
`order.status_changed` line is in the jsonl file (read every millisecond). Notifications go out
at a fixed rate (`--rate` per second, open loop) so that a slow one does not hold back the next.

quiet: the daemon does nothing else (its start-up pass over the N orders is over): the baseline.
busy: the same while the daemon's start-up catch-up discovers `--catch-up` freshly tracked
orders (a check, an event, an outbox row and a jsonl line each). Only notifications sent before
the catch-up's last event count; rounds (stop, untrack, track again, start) repeat until N are
measured or `--rounds` are done.

    python bench/notify.py [--notifications 1000] [--catch-up 20000] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from catchup import REPO, child_env, sandbox_orders, sandbox_process
from idle import free_port, wait_started

from reconciler.config import load_config
from reconciler.model import status_info
from reconciler.notify import notification_url

QUIET_TARGET_MS = 25.0
BUSY_TARGET_MS = 250.0
RECEIVER_SECRET = "bench-receiver-secret-0123456789abcdef"
# Open statuses the notified orders move between: each notification is a real change.
STATUSES = ("Processing", "Screening")
EVENT_TIMEOUT_S = 30.0  # a notification whose event is not there by then counts as lost
CATCH_UP_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 30.0
UNTRACK_CHUNK = 2000  # ids per `untrack` command line


def write_config(workdir: Path, base_url: str) -> Path:
    """Write a daemon config: long schedules, a receiver, a jsonl sink; return its path."""
    port = free_port()
    path = workdir / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{workdir / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{base_url}"\nconcurrency = 16\n'
        'poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "6h"\n\n'
        "[ccv.status_intervals]  # none: no status is polled faster than min_interval\n\n"
        f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n\n'
        f'[[sinks]]\ntype = "jsonl"\npath = "{workdir / "events.jsonl"}"\n'
    )
    return path


class Daemon:
    """`reconciler run` as a process of its own."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config = config
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> None:
        """Run another reconciler command to its end."""
        subprocess.run(
            [sys.executable, "-m", "reconciler", "--config", str(self.config), *args],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=300,
        )

    def start(self, port: int) -> None:
        """Start the daemon and wait until its receiver accepts connections."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "--config", str(self.config), "run"],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"reconciler run exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        raise SystemExit("the receiver did not listen within 60 s")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if code != 0:
            print(f"warning: reconciler run exited with {code} on SIGTERM", file=sys.stderr)
        self.proc = None


class Tail:
    """New lines of the jsonl sink's file, from where it ended when this was made."""

    def __init__(self, path: Path) -> None:
        path.touch()
        self.file = path.open("rb")
        self.file.seek(0, os.SEEK_END)
        self.rest = b""

    def events(self) -> list[dict[str, Any]]:
        """Return the events appended since the last call (whole lines only)."""
        data = self.rest + self.file.read()
        lines = data.split(b"\n")
        self.rest = lines.pop()
        return [json.loads(line) for line in lines if line]

    def close(self) -> None:
        self.file.close()


@dataclass
class Run:
    """Notifications of one phase: when each was sent and when its event arrived."""

    sent: dict[str, tuple[float, str]] = field(default_factory=dict)  # id -> (t0, new status)
    latency_s: dict[str, float] = field(default_factory=dict)
    # From the notification to the event's own time (when the check diffed its answer, before
    # its transaction waited for the database): the rest of the latency is that wait, the
    # commit and the outbox delivering it to the jsonl file.
    written_s: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)  # id -> time.time() at t0
    refused: int = 0
    preempted: int = 0  # the catch-up saw the change first (its event says so)
    discovered: int = 0  # order.discovered events of the catch-up orders
    caught_up_at: float | None = None  # when the catch-up's last event was read


async def notify_all(
    base_url: str,
    urls: dict[str, str],
    status: dict[str, str],
    targets: Sequence[str],
    rate: float,
    tail: Tail,
    *,
    catch_up: frozenset[str] = frozenset(),
) -> Run:
    """Notify about each target at `rate` per second (until a catch-up of `catch_up` orders
    is over, when there is one) and collect the latencies."""
    run = Run()
    stop_sending = asyncio.Event()
    sending_over = False
    all_in = asyncio.Event()  # sending is over and every notification is accounted for

    async def read() -> None:
        while True:
            now = time.perf_counter()
            for ev in tail.events():
                oid = ev.get("subject")
                if ev["type"] == "order.discovered" and oid in catch_up:
                    run.discovered += 1
                    if run.discovered == len(catch_up):
                        run.caught_up_at = now
                        stop_sending.set()
                elif ev["type"] == "order.status_changed" and oid in run.sent:
                    t0, new = run.sent[oid]
                    if ev["data"]["status"] != new:
                        continue
                    if ev["data"]["via"] == "notification":
                        run.latency_s[oid] = now - t0
                        run.written_s[oid] = event_time(ev["time"]) - run.wall[oid]
                    else:
                        run.preempted += 1
            accounted = len(run.latency_s) + run.preempted + run.refused == len(run.sent)
            if sending_over and accounted and (not catch_up or run.caught_up_at is not None):
                all_in.set()
            await asyncio.sleep(0.001)

    async def one(admin: aiohttp.ClientSession, fresh: aiohttp.ClientSession, oid: str) -> None:
        new = STATUSES[1] if status[oid] == STATUSES[0] else STATUSES[0]
        async with admin.post(f"{base_url}/_sandbox/orders/ccv/{oid}", json={"status": new}) as r:
            r.raise_for_status()
        status[oid] = new
        t0 = time.perf_counter()
        run.sent[oid] = (t0, new)
        run.wall[oid] = time.time()
        async with fresh.post(urls[oid], data=b"") as resp:
            if resp.status != 202:
                run.refused += 1

    reader = asyncio.ensure_future(read())
    tasks: list[asyncio.Task[None]] = []
    async with (
        aiohttp.ClientSession() as admin,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh,
    ):
        started = time.perf_counter()
        for i, oid in enumerate(targets):
            if catch_up and stop_sending.is_set():
                break
            wait = started + i / rate - time.perf_counter()
            if wait > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop_sending.wait(), wait)
                if catch_up and stop_sending.is_set():
                    break
            tasks.append(asyncio.ensure_future(one(admin, fresh, oid)))
        await asyncio.gather(*tasks)
        sending_over = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                all_in.wait(), EVENT_TIMEOUT_S + (CATCH_UP_TIMEOUT_S if catch_up else 0)
            )
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    return run


def event_time(text: str) -> float:
    """Return a CloudEvent `time` (RFC 3339, UTC, milliseconds) as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def quantiles_ms(values: Sequence[float]) -> tuple[float, float]:
    """Return p50 and p99 in milliseconds."""
    if len(values) < 2:
        return (values[0] * 1000, values[0] * 1000) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def main() -> int:
    """Run the benchmark and print its summary line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--notifications", type=int, default=1000, help="distinct orders notified")
    p.add_argument("--catch-up", type=int, default=20_000, help="orders the busy catch-up finds")
    p.add_argument("--rate", type=float, default=20.0, help="notifications per second")
    p.add_argument("--rounds", type=int, default=10, help="at most this many busy catch-ups")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    args = p.parse_args()
    if args.notifications < 1 or args.rate <= 0:
        p.error("--notifications and --rate must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    env = child_env(RECONCILER_RECEIVER_SECRET=RECEIVER_SECRET)
    os.environ["RECONCILER_RECEIVER_SECRET"] = RECEIVER_SECRET  # to sign the URLs here
    os.environ["RECONCILER_CCV_API_KEY"] = env["RECONCILER_CCV_API_KEY"]
    # Half of the sandbox's orders are open at --speed 0; ask for enough of them.
    total = 3 * args.notifications + args.catch_up
    try:
        with sandbox_process(total, workdir / "sandbox.log") as base_url:
            orders = sandbox_orders(base_url)
            status = {o["id"]: o["status"] for o in orders}
            targets = [o["id"] for o in orders if not status_info("ccv", o["status"]).end_state][
                : args.notifications
            ]
            chosen = set(targets)
            others = [o["id"] for o in orders if o["id"] not in chosen][: args.catch_up]
            if len(targets) < args.notifications or len(others) < args.catch_up:
                raise SystemExit("the sandbox has too few open orders for these sizes")
            config_path = write_config(workdir, base_url)
            config = load_config(config_path)
            assert config.receiver is not None
            urls = {
                oid: notification_url(config.receiver, "default", order_id=oid) for oid in targets
            }
            port = config.receiver.listen_port
            daemon = Daemon(config_path, env, workdir / "run.log")
            (workdir / "targets.txt").write_text("".join(f"{o}\n" for o in targets))
            (workdir / "others.txt").write_text("".join(f"{o}\n" for o in others))
            daemon.cli("track", "ccv", "--from-file", str(workdir / "targets.txt"))
            try:
                tail = Tail(workdir / "events.jsonl")
                daemon.start(port)
                assert daemon.proc is not None
                wait_started(daemon.proc, workdir / "reconciler.db", len(targets))
                tail.events()  # the start-up discoveries
                quiet = asyncio.run(notify_all(base_url, urls, status, targets, args.rate, tail))
                daemon.stop()
                busy: list[float] = []
                busy_written: list[float] = []
                lost = preempted = rounds = 0
                catch_up = frozenset(others)
                left = list(targets)
                while left and rounds < args.rounds:
                    rounds += 1
                    if rounds > 1:
                        for i in range(0, len(others), UNTRACK_CHUNK):
                            daemon.cli("untrack", "ccv", *others[i : i + UNTRACK_CHUNK])
                    daemon.cli("track", "ccv", "--from-file", str(workdir / "others.txt"))
                    daemon.start(port)
                    run = asyncio.run(
                        notify_all(base_url, urls, status, left, args.rate, tail, catch_up=catch_up)
                    )
                    daemon.stop()
                    if run.caught_up_at is None:
                        raise SystemExit(f"catch-up round {rounds} did not finish")
                    during = [o for o, (t0, _) in run.sent.items() if t0 < run.caught_up_at]
                    busy += [run.latency_s[o] for o in during if o in run.latency_s]
                    busy_written += [run.written_s[o] for o in during if o in run.written_s]
                    lost += sum(1 for o in during if o not in run.latency_s) - run.preempted
                    preempted += run.preempted
                    left = [o for o in left if o not in run.sent]
                    print(
                        f"round {rounds}: {len(during)} notifications during the catch-up "
                        f"of {len(others)} orders",
                        flush=True,
                    )
            finally:
                daemon.stop()
                tail.close()
    finally:
        if args.keep:
            print(f"work directory: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    quiet_lost = len(quiet.sent) - len(quiet.latency_s)
    for name, written in (("quiet", list(quiet.written_s.values())), ("busy", busy_written)):
        w50, w99 = quantiles_ms(written)
        print(f"{name}: notification -> event written p50={w50:.0f}ms p99={w99:.0f}ms")
    q50, q99 = quantiles_ms(list(quiet.latency_s.values()))
    b50, b99 = quantiles_ms(busy)
    missed = (
        not q99 < QUIET_TARGET_MS
        or not b99 < BUSY_TARGET_MS
        or quiet_lost > 0
        or lost > 0
        or quiet.refused > 0
    )
    print(
        f"notify: quiet n={len(quiet.latency_s)} p50={q50:.1f}ms p99={q99:.1f}ms "
        f"(target p99 < {QUIET_TARGET_MS:g}ms) busy n={len(busy)} p50={b50:.1f}ms "
        f"p99={b99:.1f}ms (target p99 < {BUSY_TARGET_MS:g}ms) catch-up={args.catch_up} "
        f"rounds={rounds} rate={args.rate:g}/s lost={quiet_lost + lost} preempted={preempted}"
        + (" MISSED" if missed else "")
    )
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
