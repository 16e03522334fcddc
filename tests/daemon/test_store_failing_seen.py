"""A store that cannot be written (a full disk) is seen where an operator looks, not in
/healthz alone: /metrics' store gauges and the systemd `Status:` line say so from the first
failed write until the next committed one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.config import load_config
from reconciler.daemon import Daemon
from reconciler.runtime import Runtime
from reconciler.store import Store
from reconciler.systemd import Notifier
from tests.conftest import free_port, write_config
from tests.fake_providers import CCV_KEY, FakeCCV
from tests.notify_socket import NotifySocket

ORDERS = 50


def order_id(n: int) -> str:
    return f"0b7c1f3e-0000-4000-8000-{n:012d}"


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return /metrics' reconciler_store_* samples by (name, labels); none before the
    receiver listens."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
    except aiohttp.ClientConnectionError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("reconciler_store_")
    }


async def scrape_until(
    port: int, done: Callable[[dict[tuple[str, tuple[tuple[str, str], ...]], float]], bool]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    deadline = time.monotonic() + 30
    while not done(samples := await scrape(port)):
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics not as expected within 30 s: {samples}")
        await asyncio.sleep(0.05)
    return samples


async def status_until(sock: NotifySocket, done: Callable[[str], bool]) -> str:
    """Read the notify socket until a STATUS= line satisfies `done`; return it."""
    deadline = time.monotonic() + 30
    while True:
        got = await sock.wait_for_async("STATUS", timeout_s=deadline - time.monotonic())
        line = got[-1].fields["STATUS"]
        if done(line):
            return line


OK = ("reconciler_store_ok", ())


def failing(kind: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("reconciler_store_failing", (("kind", kind),))


async def test_a_full_disk_shows_in_metrics_and_the_status_line_until_it_recovers(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ccv.orders = {order_id(n): "New" for n in range(ORDERS)}
    port = free_port()
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='min_interval = "1s"\nmax_interval = "1h"',
        extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n',
    )
    monkeypatch.setenv("RECONCILER_RECEIVER_SECRET", "s" * 32)
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(cfg)
    store = await Store.open(config.store_path)
    try:
        await store.orders.track("ccv", "default", [(order_id(n), None) for n in range(ORDERS)], 1)
    finally:
        await store.close()
    stop = asyncio.Event()
    with NotifySocket.at_path(tmp_path / "notify.sock") as sock:
        async with Runtime(config) as rt:
            # SQLITE_FULL without filling a disk: the database may not grow by a page.
            pages = next(iter(await rt.store.conn.execute_fetchall("PRAGMA page_count")))[0]
            await rt.store.conn.execute(f"PRAGMA max_page_count = {pages}")
            rt.store.health.watch(on_corrupt=stop.set)
            notifier = Notifier(sock.address)  # closed below, as run_daemon closes its own
            serving = asyncio.ensure_future(Daemon(config, rt, notifier).serve(stop))
            try:
                bad = await scrape_until(port, lambda s: s.get(OK) == 0.0)
                assert bad[failing("full")] == 1.0
                assert bad[failing("io")] == 0.0 and bad[failing("gone")] == 0.0
                line = await status_until(sock, lambda s: "store" in s)
                assert line.startswith("store failing (full)"), line

                await rt.store.conn.execute("PRAGMA max_page_count = 1000000")
                good = await scrape_until(port, lambda s: s.get(OK) == 1.0)
                assert not any(v for k, v in good.items() if k[0] == "reconciler_store_failing")
                line = await status_until(sock, lambda s: "store" not in s)
                assert line.startswith("last pass"), line
            finally:
                stop.set()
                await serving
                notifier.close()
