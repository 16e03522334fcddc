"""Benchmark: a catch-up of N followed CCV orders against the sandbox, against a bare aiohttp client.

Both sides are whole processes timed by wall clock (interpreter start included), run alternately
against the same sandbox, which runs in a process of its own so that serving does not compete
inside the measured process. Ratio = baseline time / reconciler time (a throughput ratio).

    python bench/catchup.py [--orders 20000] [--concurrency 16] [--repeat 3] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.8
# The sandbox's published test key (HTTP Basic user, empty password); it guards nothing.
SANDBOX_KEY = "t_sandbox"
STATUS_PATH = "/api/ordercompletion/reseller/order/{}/status"
SANDBOX_START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 600.0


def child_env(**extra: str) -> dict[str, str]:
    """Return the environment of a child process: nothing inherited that changes the outcome."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "JOURNAL_"))}
    env["RECONCILER_CCV_API_KEY"] = SANDBOX_KEY
    env.update(extra)
    return env


@contextmanager
def sandbox_process(orders: int, log_path: Path) -> Iterator[str]:
    """Run `reconciler sandbox` (lifecycle off) in its own process; yield its base URL."""
    argv = [
        sys.executable,
        "-m",
        "reconciler",
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--orders",
        str(orders),
        "--speed",
        "0",
        "--drop-notifications",
        "0",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            yield _listening_url(proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _listening_url(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + SANDBOX_START_TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            break
        line = proc.stdout.readline().decode()
        if not line:
            raise SystemExit(f"sandbox exited with {proc.wait()} before listening")
        if line.startswith("sandbox listening on "):
            return line.split()[-1]
    raise SystemExit("sandbox did not start listening in time")


def sandbox_ccv_ids(base_url: str) -> list[str]:
    """Return the sandbox's CCV order ids."""
    with urllib.request.urlopen(base_url + "/_sandbox/orders", timeout=60) as resp:
        orders = json.loads(resp.read())
    return [o["id"] for o in orders["ccv"]]


def reconciler(config: Path, *args: str, stderr: Path | None = None) -> float:
    """Run `python -m reconciler --config CONFIG ARGS`; return its wall-clock seconds."""
    argv = [sys.executable, "-m", "reconciler", "--config", str(config), *args]
    with open(stderr or os.devnull, "wb") as err:
        started = time.perf_counter()
        code = subprocess.call(
            argv,
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=RUN_TIMEOUT_S,
        )
        elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"reconciler {' '.join(args)} exited with {code} (see {stderr})")
    return elapsed


def remove_store(db: Path) -> None:
    """Delete a store and its companions so that the next pass discovers every order again."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def catch_up_summary(log: Path) -> dict[str, object]:
    """Return the fields of the catch-up's closing `catch-up.done` log line."""
    for line in reversed(log.read_text().splitlines()):
        record = json.loads(line.lstrip("<0123456789>"))
        if record.get("message") == "catch-up.done":
            return dict(record)
    raise SystemExit(f"no catch-up.done line in {log}")


def run_reconciler(workdir: Path, config: Path, ids_file: Path, orders: int) -> float:
    """Track every id on a fresh store (untimed), then time one catch-up."""
    remove_store(workdir / "reconciler.db")
    reconciler(config, "track", "ccv", "--from-file", str(ids_file))
    log = workdir / "catch-up.log"
    elapsed = reconciler(config, "catch-up", stderr=log)
    done = catch_up_summary(log)
    if done.get("checked") != orders or done.get("failed") != 0:
        raise SystemExit(f"catch-up did not check every order: {done}")
    return elapsed


def run_baseline(base_url: str, ids_file: Path, concurrency: int, orders: int) -> float:
    """Time this script's --baseline mode as a process of its own."""
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--baseline",
        base_url,
        "--ids",
        str(ids_file),
        "--concurrency",
        str(concurrency),
    ]
    started = time.perf_counter()
    out = subprocess.run(
        argv,
        cwd=REPO,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    elapsed = time.perf_counter() - started
    if int(out.stdout) != orders:
        raise SystemExit(f"baseline answered {int(out.stdout)} of {orders} orders")
    return elapsed


async def baseline(base_url: str, ids: Sequence[str], concurrency: int) -> int:
    """GET every order's status with HTTP Basic, C workers over one iterator; count answers."""
    key = os.environ["RECONCILER_CCV_API_KEY"]
    headers = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    pending = iter(ids)
    answered = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal answered
        for oid in pending:
            async with session.get(base_url + STATUS_PATH.format(oid)) as resp:
                document = json.loads(await resp.read())
                answered += resp.status == 200 and "orderStatus" in document

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return answered


def main() -> int:
    """Run the benchmark (or, with --baseline, be the baseline process)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3, help="runs of each side; medians are shown")
    p.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    p.add_argument("--baseline", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--ids", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.baseline:
        ids = args.ids.read_text().split()
        print(asyncio.run(baseline(args.baseline, ids, args.concurrency)))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    try:
        with sandbox_process(args.orders, workdir / "sandbox.log") as base_url:
            ids = sandbox_ccv_ids(base_url)
            ids_file = workdir / "ids.txt"
            ids_file.write_text("".join(f"{oid}\n" for oid in ids))
            config = workdir / "reconciler.toml"
            config.write_text(
                f'[store]\npath = "{workdir / "reconciler.db"}"\n\n'
                f'[ccv]\nbase_url = "{base_url}"\nconcurrency = {args.concurrency}\n'
            )
            ours: list[float] = []
            theirs: list[float] = []
            for n in range(1, args.repeat + 1):
                ours.append(run_reconciler(workdir, config, ids_file, len(ids)))
                theirs.append(run_baseline(base_url, ids_file, args.concurrency, len(ids)))
                print(f"run {n}: reconciler={ours[-1]:.2f}s baseline={theirs[-1]:.2f}s", flush=True)
    finally:
        if args.keep:
            print(f"work directory: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    ratio = theirs_s / ours_s
    missed = ratio < TARGET
    print(
        f"catchup: orders={len(ids)} concurrency={args.concurrency} reconciler={ours_s:.2f}s "
        f"baseline={theirs_s:.2f}s ratio={ratio:.2f} (target >= {TARGET})"
        + (" MISSED" if missed else "")
    )
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
