"""Benchmark: the per-order cost of the CCV request path, reconciler's vs a bare aiohttp client.

Runs N status checks against a local server (a process of its own) with 16 at a time, either
through `CCVClient.check_orders` (request, retries, body limit, breaker: what a catch-up does per
order before the write path) or as `bench/catchup.py`'s baseline does (`session.get` with the
session's headers, one `json.loads`). Instruction counts are the measure, run it under callgrind
and fit per order from two N:

    valgrind --tool=callgrind python bench/request_path.py ours 1000
    valgrind --tool=callgrind python bench/request_path.py ours 4000   # same for `bare`
    per order = (Ir(4000) - Ir(1000)) / 3000
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KEY = "t_sandbox"
CONCURRENCY = 16
PATH = "/api/ordercompletion/reseller/order/{}/status"

_SERVER = """
import sys
from aiohttp import web

BODY = b'{"orderStatus": "AwaitingPayment", "externalReference": "ref"}'


async def status(request):
    return web.Response(body=BODY, content_type="application/json")


app = web.Application()
app.router.add_get("/api/ordercompletion/reseller/order/{id}/status", status)
runner = web.AppRunner(app, access_log=None)


async def main():
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

import asyncio
asyncio.run(main())
"""


def order_ids(n: int) -> list[str]:
    """Return `n` distinct CCV-shaped order ids."""
    return [f"3c2b1a00-0000-4000-8000-{i:012d}" for i in range(n)]


async def ours(base_url: str, ids: list[str]) -> int:
    """Check every order through reconciler's CCV client; return how many were OK."""
    from reconciler.config import CCVConfig, RetryConfig, ScheduleConfig
    from reconciler.config.secret import Secret
    from reconciler.model import Observation, Outcome
    from reconciler.sources.ccv import CCVClient

    ok = 0

    async def emit(observation: Observation) -> None:
        nonlocal ok
        ok += observation.outcome is Outcome.OK

    config = CCVConfig(
        name="default",
        base_url=base_url,
        api_key=Secret(KEY),
        poll_interval_s=300,
        concurrency=CONCURRENCY,
        timeout_s=10.0,  # the config's default
        retry=RetryConfig(),
        schedule=ScheduleConfig(min_interval_s=60, max_interval_s=3600),
    )
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await CCVClient(config, session, secrets=()).check_orders(ids, emit)
    return ok


async def bare(base_url: str, ids: list[str]) -> int:
    """Check every order as bench/catchup.py's baseline does; return how many were OK."""
    import base64

    token = base64.b64encode(f"{KEY}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    todo = iter(ids)
    ok = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for oid in todo:
            async with session.get(base_url + PATH.format(oid)) as resp:
                document = json.loads(await resp.read())
                ok += "orderStatus" in document

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return ok


def main() -> None:
    """Run `ours` or `bare` over N orders and print how many were answered OK."""
    side, n = sys.argv[1], int(sys.argv[2])
    server = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        run = ours if side == "ours" else bare
        ok = asyncio.run(run(f"http://127.0.0.1:{port}", order_ids(n)))
        print(f"{side} {n}: {ok} ok")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
