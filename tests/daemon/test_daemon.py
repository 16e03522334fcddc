"""`reconciler run`: sd_notify, signals and the event loop in a real subprocess; lock contention
and start failures in-process (daemon_here runs the same start)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import (
    REPO,
    call_cli,
    cli_env,
    daemon,
    daemon_here,
    free_port,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_providers import FakeCCNow, FakeCCV
from tests.notify_socket import NotifySocket
from tests.server.test_api import RECEIVER_SECRET, TOKEN, api_toml

ORDER = "d4e5f6a7-0000-4000-8000-000000000009"
CCV_IDS = ["d4e5f6a7-0000-4000-8000-000000000001", "d4e5f6a7-0000-4000-8000-000000000002"]


@pytest.fixture
async def daemon_setup(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> AsyncIterator[tuple[Path, FakeCCV, FakeCCNow]]:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    fake_ccnow.orders = {"396-10-1142": "pending"}
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccnow=fake_ccnow,
        ccv_extra='min_interval = "1s"\nmax_interval = "1h"',
        ccnow_extra='poll_interval = "1h"',
    )
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    yield cfg, fake_ccv, fake_ccnow


async def test_ready_watchdog_lock_and_clean_stop_while_a_check_waits(
    tmp_path: Path, daemon_setup: tuple[Path, FakeCCV, FakeCCNow]
) -> None:
    cfg, fake_ccv, _ = daemon_setup
    with NotifySocket.at_path(tmp_path / "notify.sock") as sock:
        env = cli_env(**sock.env(), WATCHDOG_USEC="1000000")
        async with daemon(cfg, env) as proc:
            started = time.monotonic()
            await sock.wait_for_async("READY", "1", timeout_s=20)
            assert time.monotonic() - started < 20
            # The start-up pass discovered both sources.
            await poll_until(lambda: len(read_events(tmp_path)) >= 3, 60, "start-up discovery")
            subjects = {e["subject"] for e in read_events(tmp_path)}
            assert subjects >= {*CCV_IDS, "396-10-1142"}

            # Watchdog: WATCHDOG_USEC/2 = 0.5 s cadence -> at least 2 pings in 1.5 s.
            window_end = time.monotonic() + 1.5
            pings = 0
            while pings < 2 and (left := window_end - time.monotonic()) > 0:
                try:
                    got = await sock.receive_async(left)
                except TimeoutError:
                    break
                pings += got.fields.get("WATCHDOG") == "1"
            assert pings >= 2

            # One writer: a catch-up beside the running daemon exits 75; reads keep working.
            contender = await call_cli("--config", cfg, "catch-up")
            assert contender.code == 75
            assert "in use" in contender.stderr
            listing = await call_cli("--config", cfg, "orders", "--json")
            assert listing.code == 0
            assert {r["order_id"] for r in json.loads(listing.stdout)} >= set(CCV_IDS)
            assert (await call_cli("--config", cfg, "events", "--json")).code == 0

            # A change is picked up by the due tick (min_interval 1 s).
            fake_ccv.orders[CCV_IDS[0]] = "FulfillmentDone"
            await poll_until(
                lambda: any(e["type"] == "order.status_changed" for e in read_events(tmp_path)),
                15,
                "the change found by a due check",
            )
            changed = [e for e in read_events(tmp_path) if e["type"] == "order.status_changed"]
            assert changed[0]["data"]["via"] == "poll"

            # SIGTERM while the next due check waits for an answer that does not come.
            fake_ccv.hold = asyncio.Event()
            asked = len(fake_ccv.requests)
            await fake_ccv.wait_until(lambda: len(fake_ccv.requests) > asked, 20)
            proc.send_signal(signal.SIGTERM)
            stopping_at = time.monotonic()
            await sock.wait_for_async("STOPPING", "1", timeout_s=10)
            code = await asyncio.wait_for(proc.wait(), 10)
            assert code == 0
            assert time.monotonic() - stopping_at < 10
    log = (tmp_path / "daemon.log").read_text()
    assert '"daemon.stopped"' in log
    assert "Traceback" not in log, log


async def test_second_run_exits_75(
    tmp_path: Path, daemon_setup: tuple[Path, FakeCCV, FakeCCNow]
) -> None:
    cfg, _, _ = daemon_setup
    with NotifySocket.abstract() as sock:
        async with daemon_here(cfg, cli_env(**sock.env())) as first:
            await sock.wait_for_async("READY", "1", timeout_s=20)
            async with daemon_here(cfg) as second:
                assert await second.wait() == 75
            log = (tmp_path / "daemon.log").read_text().splitlines()
            [refused] = [line for line in log if "in use" in line]
            assert refused.startswith("reconciler: store ")  # the one line of exit 75
            assert await asyncio.wait_for(first.stop(), 10) == 0


async def test_receiver_port_in_use_is_one_line_and_exit_75(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(
            tmp_path,
            ccv=fake_ccv,
            extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\n'
            f'public_url = "http://127.0.0.1:{port}"\n',
        )
        async with daemon_here(cfg, cli_env(RECONCILER_RECEIVER_SECRET="s" * 32)) as run:
            assert await run.wait() == 75
    stderr = (tmp_path / "daemon.log").read_text()
    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr and "Warning" not in stderr


# Run as root, a process without CAP_NET_BIND_SERVICE, as the shipped unit (which gives none).
_UNPRIVILEGED = (
    ["setpriv", "--bounding-set=-net_bind_service"]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)
LOW_PORT = 80


def _low_port_refused() -> bool:
    probe = f"import socket; socket.socket().bind(('127.0.0.1', {LOW_PORT}))"
    run = subprocess.run([*_UNPRIVILEGED, sys.executable, "-c", probe], capture_output=True)
    return b"PermissionError" in run.stderr


@pytest.mark.skipif(not _low_port_refused(), reason="this user may listen on a port below 1024")
@pytest.mark.parametrize("key", ["receiver.listen", "api.listen"])
async def test_a_listen_address_refused_to_this_user_is_a_config_error_78(
    tmp_path: Path, fake_ccv: FakeCCV, key: str
) -> None:
    # 75 would have systemd restart it every 5 s for ever: no restart gives it the port.
    receiver, api = (LOW_PORT, free_port()) if key == "receiver.listen" else (free_port(), LOW_PORT)
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=api_toml(api, receiver_port=receiver))
    proc = await asyncio.create_subprocess_exec(
        *_UNPRIVILEGED,
        sys.executable,
        "-m",
        "reconciler",
        "--config",
        str(cfg),
        "run",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        cwd=REPO,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 78, err.decode()
    [line] = [x for x in err.decode().splitlines() if x.startswith("config error")]
    assert line == (
        f"config error: {cfg}: {key}: cannot listen on 127.0.0.1:{LOW_PORT}: Permission denied "
        "(a port below 1024 needs CAP_NET_BIND_SERVICE, which reconciler.service does not give: "
        "choose another)"
    )


def _ready_line(log: Path) -> dict[str, object] | None:
    for line in log.read_text().splitlines():
        record: dict[str, object] = json.loads(line.lstrip("<0123456789>"))
        if record.get("message") == "daemon.ready":
            return record
    return None


@pytest.mark.parametrize("choice", ["", "asyncio"])
async def test_the_event_loop_is_uvloop_unless_asked_otherwise(
    tmp_path: Path, daemon_setup: tuple[Path, FakeCCV, FakeCCNow], choice: str
) -> None:
    cfg, _, _ = daemon_setup
    if not choice:
        pytest.importorskip("uvloop")
    log = tmp_path / "daemon.log"
    async with daemon(cfg, cli_env(RECONCILER_EVENT_LOOP=choice)) as proc:
        await poll_until(lambda: log.exists() and _ready_line(log), 20, "daemon.ready")
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops it as cleanly as SIGTERM
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    ready = _ready_line(log)
    assert ready is not None and ready["event_loop"] == (choice or "uvloop")


async def test_an_unknown_event_loop_is_a_configuration_error(
    daemon_setup: tuple[Path, FakeCCV, FakeCCNow],
) -> None:
    cfg, _, _ = daemon_setup
    result = await call_cli("--config", cfg, "catch-up", env=cli_env(RECONCILER_EVENT_LOOP="tokio"))
    assert result.code == 78
    assert "RECONCILER_EVENT_LOOP" in result.stderr and "tokio" in result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr


async def test_a_hangup_stops_it_cleanly(
    tmp_path: Path, daemon_setup: tuple[Path, FakeCCV, FakeCCNow]
) -> None:
    # A closed terminal: a clean stop (exit 0, daemon.stopped), not a death by SIGHUP (129).
    cfg, _, _ = daemon_setup
    log = tmp_path / "daemon.log"
    async with daemon(cfg, cli_env()) as proc:
        await poll_until(lambda: log.exists() and _ready_line(log), 20, "daemon.ready")
        proc.send_signal(signal.SIGHUP)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert "daemon.stopped" in log.read_text()


async def test_the_stop_takes_no_notification_while_the_api_finishes_a_request(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # An API request in flight (a refresh CCV does not answer) keeps the API's close waiting;
    # the receiver must not go on taking notifications meanwhile (README: the stop stops the
    # receiver), which CCV would then not send again.
    api_port, receiver_port = free_port(), free_port()
    fake_ccv.orders = {ORDER: "AwaitingPayment"}
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        # Checked at start, then not for an hour: the refresh is the one request CCV holds.
        ccv_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\n'
        "status_intervals = {}",
        extra=(
            f'[receiver]\nlisten = "127.0.0.1:{receiver_port}"\n'
            f'public_url = "http://127.0.0.1:{receiver_port}"\nsecret = "{RECEIVER_SECRET}"\n\n'
            f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\n'
            'refresh_timeout = "10s"\n'
        ),
    )
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    url = (await call_cli("--config", cfg, "notification-url", "ccv", "--order", ORDER)).stdout
    log = tmp_path / "daemon.log"
    async with daemon_here(cfg) as here, aiohttp.ClientSession() as http:
        await poll_until(lambda: log.exists() and _ready_line(log), 20, "daemon.ready")
        await poll_until(lambda: read_events(tmp_path), 60, "the start-up check")
        fake_ccv.hold = asyncio.Event()  # CCV answers nothing from now on
        refresh = asyncio.ensure_future(
            http.get(
                f"http://127.0.0.1:{api_port}/api/v1/orders/ccv/{ORDER}?refresh=1",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        )
        await fake_ccv.wait_until(lambda: fake_ccv.in_flight > 0, 10)
        here.stopping.set()  # the stop SIGTERM starts
        await poll_until(lambda: "daemon.stopping" in log.read_text(), 60, "the stop")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.post(url.strip(), data=b"") as resp:
                assert resp.status != 202, "a notification taken during the stop"
        fake_ccv.hold.set()
        assert await asyncio.wait_for(here.wait(), 20) == 0
        answered = (await asyncio.gather(refresh, return_exceptions=True))[0]
        if isinstance(answered, aiohttp.ClientResponse):
            answered.close()
    assert "notification.accepted" not in log.read_text().partition("daemon.stopping")[2]


async def test_a_daemon_started_with_nohup_ignores_the_hangup(
    tmp_path: Path, daemon_setup: tuple[Path, FakeCCV, FakeCCNow]
) -> None:
    # `nohup reconciler run`: the hangup is ignored, as asked; SIGTERM still stops it.
    cfg, _, _ = daemon_setup
    log = tmp_path / "daemon.log"
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            "nohup", sys.executable, "-m", "reconciler", "--config", str(cfg), "run",
            stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err, env=cli_env(), cwd=REPO,
        )  # fmt: skip
    try:
        await poll_until(lambda: _ready_line(log), 20, "daemon.ready")
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    signals = [
        json.loads(line.lstrip("<0123456789>"))["signal"]
        for line in log.read_text().splitlines()
        if '"daemon.signal"' in line
    ]
    assert signals == ["SIGTERM"]


async def test_a_refresh_waiting_at_the_stop_gets_the_stored_state(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # It was cut off when the stop's grace second ended: the connection closed, no answer.
    api_port = free_port()
    fake_ccv.orders = {ORDER: "AwaitingPayment"}
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\n'
        "status_intervals = {}",
        extra=(
            f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\nrefresh_timeout = "30s"\n'
        ),
    )
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    log = tmp_path / "daemon.log"
    async with daemon_here(cfg) as here, aiohttp.ClientSession() as http:
        await poll_until(lambda: log.exists() and _ready_line(log), 20, "daemon.ready")
        await poll_until(lambda: read_events(tmp_path), 60, "the start-up check")
        fake_ccv.hold = asyncio.Event()  # CCV answers nothing from now on
        asked = len(fake_ccv.requests_for(ORDER))
        refresh = asyncio.ensure_future(
            http.get(
                f"http://127.0.0.1:{api_port}/api/v1/orders/ccv/{ORDER}?refresh=1",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        )
        # The refresh's own question is at CCV: the request is in the daemon's hands.
        await fake_ccv.wait_until(lambda: len(fake_ccv.requests_for(ORDER)) > asked, 10)
        here.stopping.set()  # the stop SIGTERM starts
        try:
            async with await asyncio.wait_for(refresh, 10) as resp:
                assert resp.status == 200
                body = await resp.json()
        finally:
            fake_ccv.hold.set()
        assert (body["status"], body["refreshed"]) == ("AwaitingPayment", False)
        assert await asyncio.wait_for(here.wait(), 20) == 0
