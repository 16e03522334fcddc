"""Benchmark: the integration API. What a CCV submit through reconciler adds to a direct call,
and how fast a consumer reads the events feed.

A minimal fake of CCV's submit and status calls runs in a process of its own; `reconciler run`
runs in another, with `[api]` on loopback. Submits go one at a time (latency, not load), each
with a fresh externalReference, alternating between the direct call to the fake and the call
through reconciler (which records the submission, forwards it, and closes it tracking the order:
two SQLite commits with synchronous=FULL). `added` is the difference of the two latency
percentiles. The feed is then read from cursor 0 to the end, `--page` events per request, over
events written into the store before the daemon started.

    python bench/api.py [--submits 2000] [--events 100000] [--page 1000] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reconciler.events import submit_uncertain_event  # noqa: E402
from reconciler.store import Store  # noqa: E402

ADDED_P99_TARGET_MS = 5.0
TOKEN = "bench-api-token-0123456789"
CCV_KEY = "t_bench"
SUBMIT_PATH = "/api/ordercompletion/reseller/order"
STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    """Return a loopback port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_fake(port: int) -> None:
    """Run the fake CCV: every submit is created, every order is `Processing`."""

    async def submit(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"orderId": str(uuid.uuid4())}, status=201)

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"orderStatus": "Processing"})

    app = web.Application()
    app.router.add_post(SUBMIT_PATH, submit)
    app.router.add_get(SUBMIT_PATH + "/{order_id}/status", status)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def percentile(values: list[float], q: float) -> float:
    """Return the q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def fill_events(db: Path, count: int) -> None:
    """Write `count` events into a fresh store, 1000 per transaction."""
    store = await Store.open(db)
    try:
        for first in range(0, count, 1000):
            events = [
                submit_uncertain_event(
                    store.store_id, n, account="default", reference=f"r{n}", time=1.0, reason="b"
                )
                for n in range(first, min(count, first + 1000))
            ]
            async with store.transaction():
                await store.events.add(events)
    finally:
        await store.close()


async def wait_port(port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise SystemExit(f"nothing listens on port {port}")


async def measure(args: argparse.Namespace, fake_port: int, api_port: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    api = f"http://127.0.0.1:{api_port}/api/v1"
    direct = f"http://127.0.0.1:{fake_port}{SUBMIT_PATH}"
    out: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=4)
    async with aiohttp.ClientSession(connector=connector) as http:
        # The feed: from the start to the end, one page after another.
        started = time.perf_counter()
        cursor, read = "0", 0
        while True:
            async with http.get(
                f"{api}/events", params={"after": cursor, "limit": args.page}, headers=headers
            ) as resp:
                page = await resp.json()
            read += len(page["events"])
            if not page["events"]:
                break
            cursor = page["next"]
        out["feed_s"] = time.perf_counter() - started
        out["feed_events"] = read

        # Submits, alternating direct and through reconciler.
        through: list[float] = []
        plain: list[float] = []
        for n in range(args.warmup + args.submits):
            body = {
                "notifyCustomerByEmail": True,
                "externalReference": f"bench-{n}",
                "order": {"orderNotes": None},
            }
            direct_body = {
                **body,
                "statusNotificationInformation": {
                    "notificationUrl": "https://integrator.example/notify",
                    "notifyOnStatus": ["Completed"],
                },
            }
            t0 = time.perf_counter()
            async with http.post(direct, json=direct_body) as resp:
                await resp.read()
                assert resp.status == 201, resp.status
            t1 = time.perf_counter()
            async with http.post(f"{api}/ccv/orders", json=body, headers=headers) as resp:
                await resp.read()
                assert resp.status == 201, resp.status
            t2 = time.perf_counter()
            if n >= args.warmup:
                plain.append((t1 - t0) * 1000)
                through.append((t2 - t1) * 1000)
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            out[f"direct_{name}"] = percentile(plain, q)
            out[f"through_{name}"] = percentile(through, q)
    return out


def main() -> int:
    """Run the benchmark and print one summary line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--submits", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--page", type=int, default=1000)
    p.add_argument(
        "--dir", type=Path, help="where the store goes (default: a temporary directory in $TMPDIR)"
    )
    p.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    p.add_argument("--serve-fake", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return 0

    work = Path(tempfile.mkdtemp(prefix="reconciler-bench-api-", dir=args.dir))
    fake_port, api_port, receiver_port = free_port(), free_port(), free_port()
    db = work / "reconciler.db"
    asyncio.run(fill_events(db, args.events))
    cfg = work / "reconciler.toml"
    cfg.write_text(
        f'[store]\npath = "{db}"\n\n'
        f'[ccv]\nbase_url = "http://127.0.0.1:{fake_port}"\napi_key = "{CCV_KEY}"\n\n'
        f'[receiver]\nlisten = "127.0.0.1:{receiver_port}"\n'
        'public_url = "https://integrator.example/reconciler"\n'
        'secret = "bench-receiver-secret-0123456789"\n\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["PYTHONPATH"] = str(REPO)
    fake = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(fake_port)], env=env)
    with (work / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "--config", str(cfg), "run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:

        async def run() -> dict[str, float]:
            await wait_port(fake_port)
            await wait_port(api_port)
            return await measure(args, fake_port, api_port)

        r = asyncio.run(run())
    finally:
        daemon.terminate()
        daemon.wait(30)
        fake.terminate()
        fake.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    added_p50 = r["through_p50"] - r["direct_p50"]
    added_p99 = r["through_p99"] - r["direct_p99"]
    missed = added_p99 >= ADDED_P99_TARGET_MS
    print(
        f"api: submits={args.submits} direct p50={r['direct_p50']:.2f}ms "
        f"p99={r['direct_p99']:.2f}ms through p50={r['through_p50']:.2f}ms "
        f"p99={r['through_p99']:.2f}ms added p50={added_p50:.2f}ms p99={added_p99:.2f}ms "
        f"(target p99 < {ADDED_P99_TARGET_MS:.0f}ms){' MISSED' if missed else ''} "
        f"feed: events={int(r['feed_events'])} page={args.page} "
        f"{r['feed_events'] / r['feed_s']:.0f} events/s"
    )
    print(json.dumps({k: round(v, 3) for k, v in r.items()}), file=sys.stderr)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
