"""Benchmark: `reconciler ccnow ship` of N pending CCNow orders against the sandbox, vs a bare
aiohttp client posting the same batches.

The sandbox (lifecycle off) runs in a process of its own. Before each measured run every order
is set back to `pending` through the sandbox's admin endpoint and the store is removed
(untimed). reconciler is timed as a whole process (interpreter start included): it records N
commands (one commit), posts them in batches of `batch_size` one post at a time, and closes
each batch with its answer lines in one transaction (snapshot rows, N `order.discovered`
events with `via: action`, N `order.action_succeeded` events, outbox rows, log lines). The
baseline is this script in `--baseline` mode, also a process of its own: the same posts, one
at a time, each answer split into lines and checked. Ratio = baseline time / reconciler time.

    python bench/actions.py [--commands 1000] [--batch 25] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from catchup import REPO, Timing, remove_store, sandbox_process, timed

CCNOW_PATH = "/cgi-local/oapi_receive.cgi"
LOGIN = [("x_clientid", "sandbox"), ("x_password", "sandbox")]
NOTES = "Shipped by bench/actions.py"


def ccnow_ids(base_url: str, n: int) -> list[str]:
    """Return the first `n` CCNow order ids of the sandbox."""
    with urllib.request.urlopen(base_url + "/_sandbox/orders", timeout=60) as resp:
        orders = json.loads(resp.read())["ccnow"]
    if len(orders) < n:
        raise SystemExit(f"the sandbox has {len(orders)} CCNow orders, not {n}")
    return [o["id"] for o in orders[:n]]


async def reset_pending(base_url: str, ids: list[str]) -> None:
    """Set every order back to `pending` (untimed)."""
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as http:

        async def one(order_id: str) -> None:
            async with sem:
                url = f"{base_url}/_sandbox/orders/ccnow/{order_id}"
                async with http.post(url, json={"status": "pending"}) as resp:
                    resp.raise_for_status()

        await asyncio.gather(*(one(i) for i in ids))


def write_config(workdir: Path, base_url: str, batch: int) -> Path:
    path = workdir / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{workdir / "reconciler.db"}"\n\n'
        f'[ccnow]\nurl = "{base_url}{CCNOW_PATH}"\nclient_id = "sandbox"\n'
        # the sandbox's published password; it guards nothing
        f'password = "sandbox"\nbatch_size = {batch}\n'
    )
    path.chmod(0o600)
    return path


async def baseline(base_url: str, ids: list[str], batch: int) -> int:
    """Post the batches one at a time; return how many orders answered `mark_shipped`."""
    shipped = 0
    async with aiohttp.ClientSession() as http:
        for start in range(0, len(ids), batch):
            fields = list(LOGIN)
            for n, order_id in enumerate(ids[start : start + batch], 1):
                fields += [
                    (f"x_orderid_{n}", order_id),
                    (f"x_action_{n}", "ship"),
                    (f"x_notes_{n}", NOTES),
                ]
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            data = urlencode(fields).encode("ascii")
            async with http.post(base_url + CCNOW_PATH, data=data, headers=headers) as resp:
                text = await resp.text()
            shipped += sum(1 for line in text.splitlines() if line.endswith(" mark_shipped"))
    return shipped


def run_reconciler(config: Path, ids: list[str], log: Path) -> Timing:
    argv = [sys.executable, "-m", "reconciler", "--config", str(config), "ccnow", "ship"]
    argv += [*ids, "--notes", NOTES]
    with log.open("wb") as err:
        timing, code = timed(argv, stdout=subprocess.DEVNULL, stderr=err)
    if code != 0:
        raise SystemExit(f"reconciler ccnow ship exited with {code} (see {log})")
    return timing


def run_baseline(base_url: str, ids_file: Path, batch: int) -> Timing:
    argv = [sys.executable, __file__, "--baseline", base_url, str(ids_file), "--batch", str(batch)]
    timing, code = timed(argv, stdout=subprocess.DEVNULL, stderr=None)
    if code != 0:
        raise SystemExit(f"baseline exited with {code}")
    return timing


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=1000)
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--baseline", nargs=2, metavar=("URL", "IDS_FILE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.baseline:
        url, ids_file = args.baseline
        ids = Path(ids_file).read_text().split()
        shipped = asyncio.run(baseline(url, ids, args.batch))
        return 0 if shipped == len(ids) else 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-actions-"))
    try:
        with sandbox_process(args.commands, workdir / "sandbox.log") as url:
            ids = ccnow_ids(url, args.commands)
            ids_file = workdir / "ids.txt"
            ids_file.write_text("\n".join(ids))
            config = write_config(workdir, url, args.batch)
            ours: list[Timing] = []
            theirs: list[Timing] = []
            for _ in range(args.repeat):
                asyncio.run(reset_pending(url, ids))
                remove_store(workdir / "reconciler.db")
                ours.append(run_reconciler(config, ids, workdir / "reconciler.log"))
                asyncio.run(reset_pending(url, ids))
                theirs.append(run_baseline(url, ids_file, args.batch))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    mine = statistics.median(t.wall for t in ours)
    base = statistics.median(t.wall for t in theirs)
    print(
        f"actions: commands={args.commands} batch={args.batch} "
        f"reconciler={mine:.2f}s ({args.commands / mine:.0f} commands/s) "
        f"baseline={base:.2f}s ({args.commands / base:.0f} orders/s) ratio={base / mine:.2f} "
        f"cpu: reconciler={statistics.median(t.cpu for t in ours):.2f}s "
        f"baseline={statistics.median(t.cpu for t in theirs):.2f}s load={os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "bench"))
    raise SystemExit(main())
