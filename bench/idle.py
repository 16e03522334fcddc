"""Benchmark: memory and CPU of an idle `reconciler run` following N CCV orders.

The sandbox (lifecycle off) runs in a process of its own. The daemon starts, does its start-up
pass over every order; once every order is checked and the outbox is empty, its CPU time
(/proc/PID/stat utime + stime) and VmRSS (/proc/PID/status) are sampled for a while. Schedules
are long (min_interval 1h, no per-status intervals) so that nothing falls due in the window:
this measures the floor, the scheduler's ticks and the open receiver included.

    python bench/idle.py [--orders 10000] [--seconds 60] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from catchup import REPO, child_env, sandbox_ccv_ids, sandbox_process

RSS_TARGET_MB = 100.0
CPU_TARGET_PERCENT = 1.0
STARTUP_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 30.0
# The receiver secret only signs notification URLs nobody will call here.
RECEIVER_SECRET = "bench-receiver-secret-not-used"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """Return a loopback port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """Return the process's user + system CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, name: str) -> int:
    """Return a `VmRSS` / `VmHWM`-style value of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {name} in /proc/{pid}/status")


def sandbox_requests(base_url: str) -> int:
    """Return how many CCV requests the sandbox has served."""
    with urllib.request.urlopen(base_url + "/_sandbox/stats", timeout=60) as resp:
        return int(json.loads(resp.read())["ccv_requests"])


def started_up(db: Path, orders: int) -> bool:
    """Return whether every order was checked and no event waits for a sink."""
    if not db.exists():
        return False
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        checked = conn.execute("SELECT count(*) FROM orders WHERE last_checked IS NOT NULL")
        pending = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'")
        return bool(checked.fetchone()[0] == orders and pending.fetchone()[0] == 0)
    except sqlite3.OperationalError:  # schema not created yet
        return False
    finally:
        conn.close()


def wait_started(proc: subprocess.Popen[bytes], db: Path, orders: int) -> float:
    """Wait (bounded) for the start-up pass; return how long it took."""
    started = time.monotonic()
    while not started_up(db, orders):
        if proc.poll() is not None:
            raise SystemExit(f"reconciler run exited with {proc.returncode} during start-up")
        if time.monotonic() - started > STARTUP_TIMEOUT_S:
            raise SystemExit("start-up pass did not finish in time")
        time.sleep(0.5)
    return time.monotonic() - started


def write_config(workdir: Path, base_url: str, concurrency: int) -> Path:
    """Write a daemon config with long schedules and a receiver; return its path."""
    port = free_port()
    path = workdir / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{workdir / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{base_url}"\nconcurrency = {concurrency}\n'
        'poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "6h"\n\n'
        "[ccv.status_intervals]  # none: no status is polled faster than min_interval\n\n"
        f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
    )
    return path


@dataclass(frozen=True)
class Idle:
    """What an idle window showed."""

    seconds: float
    cpu_percent: float
    rss_mb: float  # highest VmRSS seen in the window
    peak_mb: float  # VmHWM: the highest since start, start-up pass included
    requests: int  # provider requests made meanwhile


def watch(pid: int, base_url: str, seconds: float) -> Idle:
    """Sample the process's RSS every second and its CPU time over `seconds`."""
    requests_before = sandbox_requests(base_url)
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    rss = [status_kib(pid, "VmRSS") / 1024]
    while (left := started + seconds - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        rss.append(status_kib(pid, "VmRSS") / 1024)
    wall = time.monotonic() - started
    return Idle(
        seconds=wall,
        cpu_percent=100 * (cpu_seconds(pid) - cpu_before) / wall,
        rss_mb=max(rss),
        peak_mb=status_kib(pid, "VmHWM") / 1024,
        requests=sandbox_requests(base_url) - requests_before,
    )


def main() -> int:
    """Run the benchmark and print its summary line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the idle window")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    args = p.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    env = child_env(RECONCILER_RECEIVER_SECRET=RECEIVER_SECRET)
    try:
        with sandbox_process(args.orders, workdir / "sandbox.log") as base_url:
            ids = sandbox_ccv_ids(base_url)
            (workdir / "ids.txt").write_text("".join(f"{oid}\n" for oid in ids))
            config = write_config(workdir, base_url, args.concurrency)
            command = [sys.executable, "-m", "reconciler", "--config", str(config)]
            subprocess.run(
                [*command, "track", "ccv", "--from-file", str(workdir / "ids.txt")],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
                timeout=120,
            )
            with (workdir / "run.log").open("wb") as log:
                proc = subprocess.Popen(
                    [*command, "run"],
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
                try:
                    startup_s = wait_started(proc, workdir / "reconciler.db", len(ids))
                    # One request per order: more, and a pass asked orders twice (bench/README).
                    asked = sandbox_requests(base_url)
                    print(
                        f"start-up pass over {len(ids)} orders took about {startup_s:.0f}s "
                        f"({asked} requests)"
                    )
                    idle = watch(proc.pid, base_url, args.seconds)
                finally:
                    proc.terminate()
                    try:
                        code = proc.wait(timeout=STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        code = proc.wait()
            if code != 0:
                print(f"warning: reconciler run exited with {code} on SIGTERM", file=sys.stderr)
    finally:
        if args.keep:
            print(f"work directory: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    missed = idle.rss_mb >= RSS_TARGET_MB or idle.cpu_percent >= CPU_TARGET_PERCENT
    print(
        f"idle: orders={len(ids)} seconds={idle.seconds:.0f} rss={idle.rss_mb:.1f}MB "
        f"cpu={idle.cpu_percent:.2f}% requests={idle.requests} (targets rss < "
        f"{RSS_TARGET_MB:.0f}MB, cpu < {CPU_TARGET_PERCENT:g}%; start-up peak "
        f"rss={idle.peak_mb:.1f}MB)" + (" MISSED" if missed else "")
    )
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
