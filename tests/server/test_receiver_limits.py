"""`reconciler run` under a low open-file limit: a flood of idle connections to the receiver
does not take the descriptors the store and the sinks need, and /healthz still answers."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
from pathlib import Path

import aiohttp

from tests.conftest import REPO, call_cli, cli_env, free_port, poll_until, read_events, write_config
from tests.fake_providers import FakeCCV
from tests.server.test_notifications import RECEIVER_SECRET

ORDER = "7e57a11c-0000-4000-8000-00000000f11e"
NOFILE = 128  # the receiver's default cap is then 64


def _low_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))


async def test_idle_connection_flood_leaves_descriptors_for_sinks_and_healthz(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    port = free_port()
    fake_ccv.orders = {ORDER: "AwaitingPayment"}
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\n'
        "status_intervals = {}",
        extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n',
    )
    env = cli_env(RECONCILER_RECEIVER_SECRET=RECEIVER_SECRET)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER, env=env)).code == 0
    url = await call_cli("--config", cfg, "notification-url", "ccv", "--order", ORDER, env=env)
    log = tmp_path / "daemon.log"
    with log.open("ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            "--config",
            str(cfg),
            "run",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=REPO,
            preexec_fn=_low_nofile,
        )
    idle: list[asyncio.StreamWriter] = []
    try:
        await poll_until(lambda: "daemon.ready" in log.read_text(), 20, "daemon.ready")
        await poll_until(lambda: read_events(tmp_path), 60, "start-up discovery")
        # More idle connections than the daemon has descriptors.
        for _ in range(2 * NOFILE):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            idle.append(writer)

        fake_ccv.orders[ORDER] = "Screening"
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status in (200, 503)  # answered: the status is the sources'
            async with http.post(url.stdout.strip(), data=b"") as response:
                assert response.status == 202
        # The notification's check runs and the jsonl sink writes its event.
        await poll_until(
            lambda: any(e["type"] == "order.status_changed" for e in read_events(tmp_path)),
            10,
            "the notified change in the jsonl sink",
        )
    finally:
        for writer in idle:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if proc.returncode is None:
            proc.terminate()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 20)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    assert "Too many open files" not in text
    assert '"receiver.at_capacity"' in text and '"max_connections":64' in text
