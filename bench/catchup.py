"""Benchmark: a catch-up of N followed CCV orders against the sandbox, vs a bare aiohttp client.

Both sides are whole processes timed by wall clock (interpreter start included), run alternately
against the same sandbox, which runs in a process of its own so that serving does not compete
inside the measured process. Ratio = baseline time / reconciler time (a throughput ratio).

`--pass first` (the default) times the first catch-up of freshly tracked orders: every order is
discovered, so every check also writes an event (the history) and its outbox row, and the log
sink writes one line per event. `--pass second` times a later catch-up in which nothing changed
(orders in an end state are no longer asked; the baseline asks the same open orders).

`--loop asyncio` or `--loop uvloop` puts both processes on the same event loop (by default
reconciler runs on uvloop where it is installed and the bare client on asyncio's own loop).

    python bench/catchup.py [--orders 20000] [--concurrency 16] [--repeat 3] [--pass first]
                            [--loop default|asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import compileall
import json
import os
import resource
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.8
# The sandbox's published test key (HTTP Basic user, empty password); it guards nothing.
SANDBOX_KEY = "t_sandbox"
STATUS_PATH = "/api/ordercompletion/reseller/order/{}/status"
SANDBOX_START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Timing:
    """One measured process: wall-clock seconds and CPU seconds (user + system)."""

    wall: float
    cpu: float


# The event loop of both measured processes (--loop): "default" is what each uses unasked,
# uvloop for reconciler where it is installed and asyncio's own for the bare client.
LOOP = "default"


def child_env(**extra: str) -> dict[str, str]:
    """Return the environment of a child process: nothing inherited that changes the outcome."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "JOURNAL_"))}
    env["RECONCILER_CCV_API_KEY"] = SANDBOX_KEY
    if LOOP != "default":
        env["RECONCILER_EVENT_LOOP"] = LOOP
    env.update(extra)
    return env


@contextmanager
def sandbox_process(orders: int, log_path: Path) -> Iterator[str]:
    """Run `reconciler sandbox` (lifecycle off) in its own process; yield its base URL."""
    argv = [sys.executable, "-m", "reconciler", "sandbox", "--listen", "127.0.0.1:0"]
    argv += ["--orders", str(orders), "--speed", "0", "--drop-notifications", "0"]
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


def compile_tree(tree: Path) -> None:
    """Write the bytecode of a source tree's package, as installing it does. The bare client's
    aiohttp is installed and compiled; under PYTHONDONTWRITEBYTECODE=1 a tree that is not would
    be compiled from source by every reconciler process (about 0.35 G instructions, 80 ms)."""
    compileall.compile_dir(tree / "reconciler", quiet=1)


def sandbox_orders(base_url: str) -> list[dict[str, Any]]:
    """Return the sandbox's CCV orders (id, status, externalReference)."""
    with urllib.request.urlopen(base_url + "/_sandbox/orders", timeout=60) as resp:
        orders: list[dict[str, Any]] = json.loads(resp.read())["ccv"]
    return orders


def sandbox_ccv_ids(base_url: str) -> list[str]:
    """Return the sandbox's CCV order ids."""
    return [o["id"] for o in sandbox_orders(base_url)]


def timed(
    argv: Sequence[str], *, stdout: Any, stderr: Any, tree: Path = REPO
) -> tuple[Timing, int]:
    """Run a child process of the source tree `tree` to its end; return its timing and exit
    code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    code = subprocess.call(
        argv,
        cwd=tree,
        env=child_env(PYTHONPATH=str(tree)),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        timeout=RUN_TIMEOUT_S,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(wall, cpu), code


def reconciler(config: Path, *args: str, stderr: Path | None = None, tree: Path = REPO) -> Timing:
    """Run `python -m reconciler --config CONFIG ARGS` of the source tree `tree`; return its
    timing."""
    argv = [sys.executable, "-m", "reconciler", "--config", str(config), *args]
    with open(stderr or os.devnull, "wb") as err:
        timing, code = timed(argv, stdout=subprocess.DEVNULL, stderr=err, tree=tree)
    if code != 0:
        raise SystemExit(f"reconciler {' '.join(args)} exited with {code} (see {stderr})")
    return timing


def remove_store(db: Path) -> None:
    """Delete a store and its companions so that the next pass discovers every order again."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def catch_up(workdir: Path, config: Path, expected: int, events: int, tree: Path = REPO) -> Timing:
    """Time one `reconciler catch-up`; check from its last log line that it did the work."""
    log = workdir / "catch-up.log"
    timing = reconciler(config, "catch-up", stderr=log, tree=tree)
    done: dict[str, Any] = {}
    for line in reversed(log.read_text().splitlines()):
        record = json.loads(line.lstrip("<0123456789>"))
        if record.get("message") == "catch-up.done":
            done = record
            break
    if (done.get("checked"), done.get("failed"), done.get("events")) != (expected, 0, events):
        raise SystemExit(f"expected {expected} orders checked and {events} events: {done}")
    return timing


def baseline_process(base_url: str, ids_file: Path, concurrency: int, expected: int) -> Timing:
    """Time this script's --baseline mode as a process of its own."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--baseline", base_url]
    argv += ["--ids", str(ids_file), "--concurrency", str(concurrency), "--loop", LOOP]
    out = ids_file.with_suffix(".out")
    with out.open("wb") as stdout:
        timing, code = timed(argv, stdout=stdout, stderr=subprocess.DEVNULL)
    answered = out.read_text().strip()
    if code != 0 or answered != str(expected):
        raise SystemExit(f"baseline exited with {code}, answered {answered} of {expected}")
    return timing


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


def open_ids(orders: Sequence[dict[str, Any]]) -> list[str]:
    """Return the ids of orders not in an end state (what a later catch-up asks)."""
    from reconciler.model import status_info  # only the parent needs it

    return [o["id"] for o in orders if not status_info("ccv", o["status"]).end_state]


def main() -> int:
    """Run the benchmark (or, with --baseline, be the baseline process)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3, help="runs of each side; medians are shown")
    p.add_argument(
        "--pass",
        dest="which",
        choices=("first", "second"),
        default="first",
        help="time the first catch-up (discovers every order) or a later one",
    )
    p.add_argument(
        "--loop",
        choices=("default", "asyncio", "uvloop"),
        default="default",
        help="event loop of both processes (default: uvloop for reconciler where installed, "
        "asyncio for the bare client)",
    )
    p.add_argument(
        "--other",
        type=Path,
        metavar="TREE",
        help="also time the reconciler of another source tree (e.g. an older commit's `git "
        "archive`), alternating with this one against the same sandbox and baseline (first "
        "pass only)",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    p.add_argument("--baseline", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--ids", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.other is not None and args.which != "first":
        p.error("--other times first catch-ups only")
    global LOOP
    LOOP = args.loop
    if args.baseline:
        ids = args.ids.read_text().split()
        main = baseline(args.baseline, ids, args.concurrency)
        if args.loop == "uvloop":
            import uvloop

            print(uvloop.run(main))
        else:
            print(asyncio.run(main))
        return 0

    for tree in (REPO, *([args.other] if args.other is not None else [])):
        compile_tree(tree)
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    try:
        with sandbox_process(args.orders, workdir / "sandbox.log") as base_url:
            orders = sandbox_orders(base_url)
            (workdir / "track.txt").write_text("".join(f"{o['id']}\n" for o in orders))
            asked = [o["id"] for o in orders] if args.which == "first" else open_ids(orders)
            ids_file = workdir / "ids.txt"
            ids_file.write_text("".join(f"{oid}\n" for oid in asked))
            config = workdir / "reconciler.toml"
            config.write_text(
                f'[store]\npath = "{workdir / "reconciler.db"}"\n\n'
                f'[ccv]\nbase_url = "{base_url}"\nconcurrency = {args.concurrency}\n'
            )
            track = ("track", "ccv", "--from-file", str(workdir / "track.txt"))
            if args.which == "second":  # one untimed first pass; every later one is the same
                reconciler(config, *track)
                catch_up(workdir, config, len(orders), len(orders))
            ours: list[Timing] = []
            theirs: list[Timing] = []
            others: list[Timing] = []
            for n in range(1, args.repeat + 1):
                if args.which == "first":
                    remove_store(workdir / "reconciler.db")
                    reconciler(config, *track)
                discovered = len(asked) if args.which == "first" else 0
                ours.append(catch_up(workdir, config, len(asked), discovered))
                theirs.append(baseline_process(base_url, ids_file, args.concurrency, len(asked)))
                if args.other is not None:
                    remove_store(workdir / "reconciler.db")
                    reconciler(config, *track, tree=args.other)
                    others.append(catch_up(workdir, config, len(asked), discovered, args.other))
                print(
                    f"run {n}: reconciler={ours[-1].wall:.2f}s (cpu {ours[-1].cpu:.2f}s) "
                    f"baseline={theirs[-1].wall:.2f}s (cpu {theirs[-1].cpu:.2f}s)"
                    + (
                        f" other={others[-1].wall:.2f}s (cpu {others[-1].cpu:.2f}s)"
                        if others
                        else ""
                    ),
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"work directory: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ours_s = statistics.median(t.wall for t in ours)
    theirs_s = statistics.median(t.wall for t in theirs)
    ratio = theirs_s / ours_s
    missed = ratio < TARGET
    print(
        f"catchup: orders={len(asked)} concurrency={args.concurrency} reconciler={ours_s:.2f}s "
        f"baseline={theirs_s:.2f}s ratio={ratio:.2f} (target >= {TARGET})"
        + (" MISSED" if missed else "")
        + f" pass={args.which} loop={args.loop}"
        f" cpu: reconciler={statistics.median(t.cpu for t in ours):.2f}s"
        f" baseline={statistics.median(t.cpu for t in theirs):.2f}s"
    )
    if others:
        other_s = statistics.median(t.wall for t in others)
        print(
            f"catchup: other={args.other} reconciler={other_s:.2f}s baseline={theirs_s:.2f}s "
            f"ratio={theirs_s / other_s:.2f} cpu={statistics.median(t.cpu for t in others):.2f}s"
            " (the same sandbox and baseline, runs alternating)"
        )
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
