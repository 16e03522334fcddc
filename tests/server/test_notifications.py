"""The receiver inside `reconciler run`: a CCV notification becomes an event within seconds
although the poll interval is an hour; forged URLs cost no provider request."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import (
    call_cli,
    cli_env,
    daemon_here,
    free_port,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_providers import FakeCCV
from tests.notify_socket import NotifySocket

ORDER = "7e57a11c-0000-4000-8000-000000000001"
RECEIVER_SECRET = "receiver-secret-0123456789abcdef"


async def test_notification_turns_into_an_event_fast_and_forgeries_cost_nothing(
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
    url_result = await call_cli(
        "--config", cfg, "notification-url", "ccv", "--order", ORDER, env=env
    )
    assert url_result.code == 0, url_result.stderr
    url = url_result.stdout.strip()
    assert url.startswith(f"http://127.0.0.1:{port}/") and ORDER in url

    with NotifySocket.abstract() as sock:
        async with daemon_here(cfg, {**env, **sock.env()}):
            await sock.wait_for_async("READY", "1", timeout_s=20)
            await poll_until(lambda: read_events(tmp_path), 60, "start-up discovery")
            assert [e["type"] for e in read_events(tmp_path)] == ["order.discovered"]
            requests_before = len(fake_ccv.requests)

            async with aiohttp.ClientSession() as http:
                forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
                async with http.post(forged, data=b"") as resp:
                    assert resp.status == 404
                other = url.replace(ORDER, ORDER[:-1] + "2")
                async with http.post(other, data=b"") as resp:
                    assert resp.status == 404
                assert len(fake_ccv.requests) == requests_before

                fake_ccv.orders[ORDER] = "Screening"
                sent = time.monotonic()
                async with http.post(url, data=b"") as resp:  # empty body, as CCV sends it
                    assert resp.status == 202

                def changed() -> list[dict[str, Any]]:
                    return [e for e in read_events(tmp_path) if e["type"] == "order.status_changed"]

                await poll_until(
                    changed, 5 - (time.monotonic() - sent), "the event within 5 s of the notice"
                )
                [event] = changed()
                assert event["data"] == {
                    **event["data"],
                    "via": "notification",
                    "status": "Screening",
                }

                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    health = json.loads(await resp.read())
                    assert resp.status == 200, health
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
                    assert "reconciler_events_total" in text
                    assert "reconciler_followed_orders" in text
                    ccv = 'account="default",source="ccv"'
                    assert f"reconciler_source_ok{{{ccv}}} 1.0" in text
                    assert f"reconciler_poll_interval_seconds{{{ccv}}} 3600.0" in text
                    assert f"reconciler_stuck_orders{{{ccv}}} 0.0" in text
                    passes = "reconciler_pass_duration_seconds_count"
                    assert f'{passes}{{{ccv},via="notification"}} 1.0' in text
                # Junk never gets a 500.
                for body in (b"\xff" * 70000, b"{not json", b""):
                    async with http.post(url + "x", data=body) as resp:
                        assert resp.status < 500


async def test_reference_notified_before_tracking_is_applied_when_tracked(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    port = free_port()
    fake_ccv.orders = {ORDER: "Processing"}
    fake_ccv.refs = {ORDER: "INV-2041"}
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='poll_interval = "1h"\nmin_interval = "1s"\nmax_interval = "1h"',
        extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n',
    )
    env = cli_env(RECONCILER_RECEIVER_SECRET=RECEIVER_SECRET)
    url = (
        await call_cli("--config", cfg, "notification-url", "ccv", "--ref", "INV-2041", env=env)
    ).stdout.strip()
    with NotifySocket.abstract() as sock:
        async with daemon_here(cfg, {**env, **sock.env()}):
            await sock.wait_for_async("READY", "1", timeout_s=20)
            async with aiohttp.ClientSession() as http, http.post(url, data=b"") as resp:
                assert resp.status == 202
            # Nothing followed carries that reference yet (the start-up probe proved the
            # account, which had no order to ask).
            assert fake_ccv.requests_for(ORDER) == []
            track = await call_cli(
                "--config", cfg, "track", "ccv", ORDER, "--ref", "INV-2041", env=env
            )
            assert track.code == 0
            await poll_until(lambda: read_events(tmp_path), 15, "the first check of the order")
            [event] = read_events(tmp_path)
            assert event["type"] == "order.discovered"
            assert event["data"]["via"] == "notification"
            assert event["data"]["external_reference"] == "INV-2041"


async def test_a_reference_ccv_answered_differently_keeps_finding_its_order(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The URL is signed for the reference the order was tracked with; CCV then answers "ABC",
    # which is kept. CCV calls the URL once per change and never again.
    port = free_port()
    fake_ccv.orders = {ORDER: "New"}
    fake_ccv.refs = {ORDER: "ABC"}
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\n'
        "status_intervals = {}",
        # The second call is checked `debounce` after the first: 0.1 s, not the default 2 s.
        extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
        'debounce = "0.1s"\n',
    )
    env = cli_env(RECONCILER_RECEIVER_SECRET=RECEIVER_SECRET)
    assert (
        await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "abc", env=env)
    ).code == 0
    url = (
        await call_cli("--config", cfg, "notification-url", "ccv", "--ref", "abc", env=env)
    ).stdout.strip()

    def changes() -> list[dict[str, Any]]:
        return [e["data"] for e in read_events(tmp_path) if e["type"] == "order.status_changed"]

    def counted(n: int) -> Callable[[], bool]:
        return lambda: len(changes()) == n

    with NotifySocket.abstract() as sock:
        async with daemon_here(cfg, {**env, **sock.env()}), aiohttp.ClientSession() as http:
            await sock.wait_for_async("READY", "1", timeout_s=20)
            await poll_until(lambda: read_events(tmp_path), 60, "start-up discovery")
            [found] = read_events(tmp_path)
            assert found["data"]["external_reference"] == "ABC"
            for n, status in enumerate(("Screening", "Processing"), start=1):
                fake_ccv.orders[ORDER] = status
                async with http.post(url, data=b"") as resp:
                    assert resp.status == 202
                await poll_until(counted(n), 5, f"{status} via the URL")
                assert (changes()[-1]["status"], changes()[-1]["via"]) == (status, "notification")
    warnings = [
        json.loads(line)
        for line in (tmp_path / "daemon.log").read_text().splitlines()
        if "order.external_reference_differs" in line
    ]
    assert [(w["tracked"], w["answered"]) for w in warnings] == [("abc", "ABC")]
