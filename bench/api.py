"""Benchmark: the integration API. What a CCV submit through reconciler adds to a direct call,
and how fast a consumer reads the events feed.

A minimal fake of CCV's submit and status calls runs in a process of its own; `reconciler run`
runs in another, with `[api]` on loopback. Submits go one at a time (latency, not load), each
with a fresh externalReference, in rounds: the direct call to the fake; the call through
reconciler (which records the submission, forwards it, and closes it tracking the order: two
SQLite commits with synchronous=FULL); `proxy`, the leanest durable proxy, in a process of its
own (the body parsed, a row committed, forwarded, the row closed in a second commit, CCV's
answer passed back: what any submit path with DESIGN.md's guarantees costs on this machine,
printed as `floor`); and `commits`, the two commits alone in bare sqlite3 with the same
durability on the same file system. The side that goes first rotates from round to round, so
that load hits every side alike. `added` and `floor` are a side's percentile minus the direct
call's. With `--against TREE`, a second daemon run from another source tree (say a `git
worktree add` of an older commit) takes part in every round too: old and new code compared
under the same load. Before the submits, the feed is read from cursor 0 to the end, `--page`
events per request, over events written into the store before the daemon started, already
delivered to its log sink (`--backlog`: not yet). The summary line gives the load average at
the start and the end.

    python bench/api.py [--submits 2000] [--events 100000] [--page 1000] [--dir PATH]
                        [--against TREE] [--rate N] [--backlog] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

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
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
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


def serve_proxy(port: int, fake_port: int, db: Path) -> None:
    """Run the leanest durable proxy of a submit: the body parsed, one row committed, the body
    forwarded to the fake, the row closed in a second commit, CCV's answer passed back. Both
    commits with the store's durability (WAL, synchronous=FULL), on the event loop's own thread
    with no hand-off. What it adds to a direct call is what any submit path with DESIGN.md's
    guarantees (recorded before it is sent, closed before the caller's answer) costs on this
    machine: the raw baseline of `added`."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, ref TEXT, state TEXT)")
    target = f"http://127.0.0.1:{fake_port}{SUBMIT_PATH}"

    async def submit(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        row = conn.execute(
            "INSERT INTO t (ref, state) VALUES (?, 'sending')",
            (str(body.get("externalReference")),),
        )
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(target, json=body) as resp:
            answer = await resp.read()
        conn.execute("UPDATE t SET state = 'succeeded' WHERE id = ?", (row.lastrowid,))
        return web.Response(body=answer, status=resp.status, content_type="application/json")

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            app["session"] = session
            yield

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_post("/api/v1/ccv/orders", submit)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def percentile(values: list[float], q: float) -> float:
    """Return the q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def fill_events(db: Path, count: int, *, backlog: bool) -> None:
    """Write `count` events into a fresh store, 1000 per transaction. They are dated now: older
    ones would be pruned by the daemon's start-up retention once its log sink has them.

    Unless `backlog`, the log sink has them already, as a running daemon has its history: the
    submits are then timed against a daemon in its steady state. With `backlog` the daemon
    starts by delivering all of them, during the first seconds of the submits (load, which
    notify.py and catchup.py measure, not a submit's own latency)."""
    now = time.time()
    store = await Store.open(db)
    try:
        for first in range(0, count, 1000):
            events = [
                submit_uncertain_event(
                    store.store_id, n, account="default", reference=f"r{n}", time=now, reason="b"
                )
                for n in range(first, min(count, first + 1000))
            ]
            async with store.transaction():
                await store.events.add(events)
        if not backlog:
            await store.outbox.delivered("log", range(1, count + 1), now)
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


def body_of(n: int, *, direct: bool) -> dict[str, object]:
    """Return the n-th submit body; a direct call carries the notification fields itself."""
    body: dict[str, object] = {
        "notifyCustomerByEmail": True,
        "externalReference": f"bench-{n}",
        "order": {"orderNotes": None},
    }
    if direct:
        body["statusNotificationInformation"] = {
            "notificationUrl": "https://integrator.example/notify",
            "notifyOnStatus": ["Completed"],
        }
    return body


async def read_feed(http: aiohttp.ClientSession, api: str, page: int) -> tuple[int, float]:
    """Read the events feed from the start to the end; return (events, seconds)."""
    started = time.perf_counter()
    cursor, read = "0", 0
    while True:
        async with http.get(
            f"{api}/events", params={"after": cursor, "limit": page}, headers=HEADERS
        ) as resp:
            answer = await resp.json()
        read += len(answer["events"])
        if not answer["events"]:
            return read, time.perf_counter() - started
        cursor = answer["next"]


Side = Callable[[int], Awaitable[None]]


def post_to(http: aiohttp.ClientSession, url: str, *, direct: bool) -> Side:
    """Return a side that POSTs the n-th submit body to `url` and expects a 201."""

    async def post(n: int) -> None:
        headers = None if direct else HEADERS
        async with http.post(url, json=body_of(n, direct=direct), headers=headers) as resp:
            await resp.read()
            assert resp.status == 201, (url, resp.status)

    return post


def durable_commits(db: Path) -> Side:
    """Return a side that makes the two commits a submit must make, in bare sqlite3 with the
    store's durability (WAL, synchronous=FULL) on the same file system: the floor of `added`."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, ref TEXT, state TEXT)")

    async def commit_twice(n: int) -> None:
        row = conn.execute("INSERT INTO t (ref, state) VALUES (?, 'sending')", (f"b{n}",))
        conn.execute("UPDATE t SET state = 'succeeded' WHERE id = ?", (row.lastrowid,))

    return commit_twice


async def interleaved(
    sides: dict[str, Side], count: int, warmup: int, rate: float | None = None
) -> dict[str, list[float]]:
    """Run every side once per round, one call at a time; return each side's latencies in ms.

    The side that goes first rotates, so that none always follows another's work. With `rate`,
    rounds begin at that many per second (else each right after the last)."""
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for n in range(warmup + count):
        if rate is not None:
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        first = n % len(names)
        for name in names[first:] + names[:first]:
            t0 = time.perf_counter()
            await sides[name](n)
            if n >= warmup:
                times[name].append((time.perf_counter() - t0) * 1000)
    return times


def figures(times: list[float]) -> dict[str, float]:
    """Return the p50, p90, p99 and max of latencies."""
    return {**{name: percentile(times, q) for name, q in QUANTILES}, "max": max(times)}


async def measure(
    args: argparse.Namespace,
    work: Path,
    fake_port: int,
    api_ports: dict[str, int],
    proxy_port: int,
) -> dict[str, object]:
    api = f"http://127.0.0.1:{api_ports['through']}/api/v1"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as http:
        events, seconds = await read_feed(http, api, args.page)
        sides = {"direct": post_to(http, f"http://127.0.0.1:{fake_port}{SUBMIT_PATH}", direct=True)}
        for side, port in api_ports.items():
            sides[side] = post_to(http, f"http://127.0.0.1:{port}/api/v1/ccv/orders", direct=False)
        proxy = f"http://127.0.0.1:{proxy_port}/api/v1/ccv/orders"
        sides["proxy"] = post_to(http, proxy, direct=True)
        sides["commits"] = durable_commits(work / "commits.db")
        times = await interleaved(sides, args.submits, args.warmup, args.rate)
    return {
        "feed_events": events,
        "feed_s": seconds,
        **{side: figures(t) for side, t in times.items()},
    }


def config_text(db: Path, fake_port: int, api_port: int, receiver_port: int) -> str:
    """Return the daemon's config: one CCV account on the fake, the receiver and the API."""
    return (
        f'[store]\npath = "{db}"\n\n'
        f'[ccv]\nbase_url = "http://127.0.0.1:{fake_port}"\napi_key = "{CCV_KEY}"\n\n'
        f'[receiver]\nlisten = "127.0.0.1:{receiver_port}"\n'
        'public_url = "https://integrator.example/reconciler"\n'
        'secret = "bench-receiver-secret-0123456789"\n\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\n'
    )


def start_daemon(
    tree: Path, work: Path, name: str, fake_port: int, api_port: int
) -> subprocess.Popen[bytes]:
    """Start `reconciler run` from the source tree `tree`, its store in work/name.db."""
    cfg = work / f"{name}.toml"
    cfg.write_text(config_text(work / f"{name}.db", fake_port, api_port, free_port()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["PYTHONPATH"] = str(tree)
    with (work / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "reconciler", "--config", str(cfg), "run"],
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def summary(args: argparse.Namespace, r: dict[str, Any], load: tuple[float, float]) -> str:
    """Return the one summary line."""
    direct = r["direct"]
    parts = [f"api: submits={args.submits} load={load[0]:.2f}-{load[1]:.2f}"]
    for side in ("direct", "through", "against", "proxy", "commits"):
        if side in r:
            parts.append(side + " " + " ".join(f"{k}={v:.2f}ms" for k, v in r[side].items()))
    for side, name in (("through", "added"), ("against", "against added"), ("proxy", "floor")):
        if side in r:
            added = {k: r[side][k] - direct[k] for k, _ in QUANTILES}
            text = " ".join(f"{k}={v:.2f}ms" for k, v in added.items())
            parts.append(f"{name} {text}")
    missed = added_p99(r) >= ADDED_P99_TARGET_MS
    parts.append(f"(target p99 < {ADDED_P99_TARGET_MS:.0f}ms){' MISSED' if missed else ''}")
    rate = r["feed_events"] / r["feed_s"]
    parts.append(f"feed: events={r['feed_events']} page={args.page} {rate:.0f} events/s")
    return " ".join(parts)


def added_p99(r: dict[str, Any]) -> float:
    return float(r["through"]["p99"] - r["direct"]["p99"])


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
    p.add_argument(
        "--against",
        type=Path,
        metavar="TREE",
        help="also submit through a daemon run from another source tree (say a `git worktree\n"
        "add` of an older commit), interleaved with the others: both under the same load",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    p.add_argument(
        "--rate",
        type=float,
        metavar="N",
        help="begin a round of submits N times a second (default: each right after the last)",
    )
    p.add_argument(
        "--backlog",
        action="store_true",
        help="leave the stored events undelivered: the daemon delivers them to its log sink "
        "while the first submits are timed",
    )
    p.add_argument("--serve-fake", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--serve-proxy", nargs=3, metavar=("PORT", "FAKE", "DB"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return 0
    if args.serve_proxy:
        port, fake, db = args.serve_proxy
        serve_proxy(int(port), int(fake), Path(db))
        return 0

    work = Path(tempfile.mkdtemp(prefix="reconciler-bench-api-", dir=args.dir))
    fake_port = free_port()
    api_ports = {"through": free_port()}
    if args.against:
        api_ports["against"] = free_port()
    asyncio.run(fill_events(work / "through.db", args.events, backlog=args.backlog))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    fake = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(fake_port)], env=env)
    proxy_port = free_port()
    proxy_args = ["--serve-proxy", str(proxy_port), str(fake_port), str(work / "proxy.db")]
    proxy = subprocess.Popen([sys.executable, __file__, *proxy_args], env=env)
    trees = {"through": REPO, "against": args.against}
    daemons = [
        start_daemon(trees[side], work, side, fake_port, port) for side, port in api_ports.items()
    ]
    load_before = os.getloadavg()[0]
    try:

        async def run() -> dict[str, object]:
            for port in (fake_port, proxy_port, *api_ports.values()):
                await wait_port(port)
            return await measure(args, work, fake_port, api_ports, proxy_port)

        r = asyncio.run(run())
    finally:
        for process in (*daemons, proxy, fake):
            process.terminate()
        for process in (*daemons, proxy, fake):
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    print(summary(args, r, (load_before, os.getloadavg()[0])))
    print(json.dumps(r), file=sys.stderr)
    return 1 if added_p99(r) >= ADDED_P99_TARGET_MS and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
