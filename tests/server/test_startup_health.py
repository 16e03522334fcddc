"""/healthz right after a start: the start-up pass proves every account, also one that had no
order to ask, so a restart does not read as "unhealthy" for a poll interval (false alerts)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from reconciler.daemon import Ticks
from reconciler.sources.ccv import PROBE_ORDER_ID
from tests.conftest import (
    call_cli,
    cli_env,
    daemon_here,
    free_port,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_providers import CCV_KEY, FakeCCNow, FakeCCV, Reply
from tests.notify_socket import NotifySocket

# Long intervals: only the start-up pass can have proved the accounts.
_SLOW = 'poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\nstatus_intervals = {}'
_ENV = cli_env(RECONCILER_RECEIVER_SECRET="receiver-secret-0123456789abcdef")


def _receiver(port: int) -> str:
    return f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'


async def _healthz_at_ready(cfg: Path, port: int) -> tuple[int, dict[str, Any]]:
    """Start the daemon (in this process: what is asked of it is its health at its start, not
    how a process starts or stops), wait for `daemon.ready`, and return /healthz's first answer
    then."""
    log = cfg.parent / "daemon.log"
    async with daemon_here(cfg, _ENV) as run:
        await poll_until(
            lambda: "daemon.ready" in log.read_text() or run.task.done(),
            20,
            "daemon.ready",
        )
        assert not run.task.done(), log.read_text()[-2000:]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            document = await response.json()
            status = response.status
        assert await run.stop() == 0, log.read_text()[-2000:]
    return status, document


async def test_a_ccv_account_with_no_order_is_healthy_as_soon_as_the_daemon_is_ready(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra=_SLOW, extra=_receiver(port))
    status, document = await _healthz_at_ready(cfg, port)
    assert status == 200, document
    [source] = document["sources"]
    assert source["last_success"] is not None and not source["failing"]
    assert [s.order_id for s in fake_ccv.requests] == [PROBE_ORDER_ID]  # one probe, no more


async def test_a_ccv_account_with_no_order_that_does_not_answer_fails_at_start(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    gateway = Reply(404, "<html><body><h1>404 Not Found</h1></body></html>", "text/html")
    fake_ccv.replies[PROBE_ORDER_ID] = gateway
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra=_SLOW, extra=_receiver(port))
    status, document = await _healthz_at_ready(cfg, port)
    assert status == 503
    [source] = document["sources"]
    assert source["failing"] and source["last_success"] is None
    assert [e["type"] for e in read_events(tmp_path)] == ["source.failed"]


async def test_a_ccv_account_whose_orders_answered_at_start_is_not_probed(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    order = "7e57a11c-0000-4000-8000-0000000000a1"
    fake_ccv.orders = {order: "Processing"}
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra=_SLOW, extra=_receiver(port))
    assert (await call_cli("--config", cfg, "track", "ccv", order, env=_ENV)).code == 0
    status, _ = await _healthz_at_ready(cfg, port)
    assert status == 200
    assert fake_ccv.requests_for(PROBE_ORDER_ID) == []


async def test_a_ccnow_account_with_no_order_is_healthy_as_soon_as_the_daemon_is_ready(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra=_SLOW, extra=_receiver(port))
    status, document = await _healthz_at_ready(cfg, port)
    assert status == 200, document
    assert document["sources"][0]["last_success"] is not None


async def test_an_idle_ccv_account_is_proved_before_a_long_pass_over_the_others(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    # Proved only after the whole start-up pass, it read 503 at daemon.ready (which waits for
    # the pass 10 s at most) and for as long as the pass took: minutes on a large store.
    fake_ccnow.orders = {"396-10-1142": "processing"}
    port = free_port()
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccnow=fake_ccnow,
        ccv_extra=_SLOW,
        ccnow_extra=_SLOW,
        extra=_receiver(port),
    )
    assert (await call_cli("--config", cfg, "track", "ccnow", "396-10-1142", env=_ENV)).code == 0
    # The pass waits for CCNow, which answers nothing while the test runs: /healthz is asked
    # while the pass is under way, before daemon.ready (which waits for it 10 s at most).
    fake_ccnow.hold = asyncio.Event()
    async with daemon_here(cfg, _ENV) as run, aiohttp.ClientSession() as http:
        await poll_until(
            lambda: len(fake_ccv.requests) == 1 and fake_ccnow.requests, 60, "the CCV probe"
        )

        def proved() -> bool:  # the probe's answer recorded, beside the pass
            with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as db:
                query = "SELECT last_success FROM sources WHERE source = 'ccv'"
                return any(row[0] is not None for row in db.execute(query))

        await poll_until(proved, 60, "the CCV probe recorded")
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            document = await response.json()
        ccv = [s for s in document["sources"] if s["source"] == "ccv"]
        assert [s["healthy"] for s in ccv] == [True], document
        assert fake_ccnow.in_flight == 1  # the pass is still waiting for CCNow
        fake_ccnow.hold.set()
        await run.stop()


async def test_the_systemd_status_line_names_a_failing_account_after_other_passes(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    # README: the `Status:` line of `systemctl status` says which accounts are failing. A CCV
    # account that fails at start, then CCNow pending-list polls every second: the line still
    # names the CCV account after them (it showed only the last pass).
    fake_ccv.replies[PROBE_ORDER_ID] = Reply(404, "<html>Not Found</html>", "text/html")
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccnow=fake_ccnow,
        ccv_extra=_SLOW,
        ccnow_extra='poll_interval = "1s"',
    )
    with NotifySocket.abstract() as sock:
        async with daemon_here(cfg, {**_ENV, **sock.env()}) as run:
            await sock.wait_for_async("READY", "1", timeout_s=20)
            statuses: list[str] = []
            while not any("ccnow/default pending list" in s for s in statuses):
                got = await sock.wait_for_async("STATUS", timeout_s=10)
                statuses += [d.fields["STATUS"] for d in got if "STATUS" in d.fields]
            assert await run.stop() == 0
    later = [s for s in statuses if "ccnow/default pending list" in s]
    assert later[-1].startswith("failing ccv/default; last pass ccnow/default pending list"), later


async def test_the_systemd_status_line_follows_what_the_heartbeat_probe_finds(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # A CCV account with no order is proved by the heartbeat alone: its failure and its
    # recovery change the `Status:` line at once, though no pass of the scheduler's ran.
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra='poll_interval = "0.5s"')
    with NotifySocket.abstract() as sock:
        async with daemon_here(cfg, {**_ENV, **sock.env()}) as run:
            ready = await sock.wait_for_async("READY", "1", timeout_s=20)
            assert not ready[-1].fields["STATUS"].startswith("failing"), ready[-1].fields
            fake_ccv.replies[PROBE_ORDER_ID] = Reply(200, "<html>Maintenance</html>", "text/html")
            got = await sock.wait_for_async("STATUS", timeout_s=10)
            failing = got[-1].fields["STATUS"]
            del fake_ccv.replies[PROBE_ORDER_ID]
            got = await sock.wait_for_async("STATUS", timeout_s=10)
            recovered = got[-1].fields["STATUS"]
            assert await run.stop() == 0
    assert failing.startswith("failing ccv/default; last pass start-up catch-up"), failing
    assert recovered.startswith("last pass start-up catch-up"), recovered
    assert [e["type"] for e in read_events(tmp_path)] == ["source.failed", "source.recovered"]


async def test_the_systemd_status_line_names_the_last_pass_not_a_notifications_check(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # README: notifications are not passes (`status --json` `last_pass`), yet the `Status:`
    # line said "last pass ccv/default notification". A notification whose check CCV refuses
    # (401): the line names the account failing, and still the start-up pass as the last.
    port = free_port()
    order = "5e77a11c-0000-4000-8000-0000000000cc"
    fake_ccv.orders = {order: "New"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra=_SLOW, extra=_receiver(port))
    assert (await call_cli("--config", cfg, "track", "ccv", order)).code == 0
    url = await call_cli("--config", cfg, "notification-url", "ccv", "--order", order, env=_ENV)
    assert url.code == 0, url.stderr
    with NotifySocket.abstract() as sock:
        async with daemon_here(cfg, {**_ENV, **sock.env()}) as run:
            await sock.wait_for_async("READY", "1", timeout_s=20)
            fake_ccv.replies[order] = Reply(401, "Unauthorized")
            async with aiohttp.ClientSession() as http, http.post(url.stdout.strip()) as resp:
                assert resp.status == 202
            statuses: list[str] = []
            while not any(s.startswith("failing") for s in statuses):
                got = await sock.wait_for_async("STATUS", timeout_s=10)
                statuses += [d.fields["STATUS"] for d in got if "STATUS" in d.fields]
            assert await run.stop() == 0
    failing = [s for s in statuses if s.startswith("failing")]
    assert failing[0].startswith("failing ccv/default; last pass start-up catch-up"), failing


async def test_ready_names_an_account_the_store_records_failing_before_the_first_pass_ends(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # README: READY=1 carries `failing ccv/default; last pass starting` when the start-up pass
    # takes over its wait and the store records the account failing. It said `last pass
    # starting` alone: the failing accounts were read only once a pass had ended.
    order = "7e57a11c-0000-4000-8000-0000000000a2"
    fake_ccv.always = Reply(500, "Internal Server Error")
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra=_SLOW)
    assert (await call_cli("--config", cfg, "track", "ccv", order, env=_ENV)).code == 0
    caught = await call_cli("--config", cfg, "catch-up", env=_ENV)
    assert caught.code == 75, caught.stderr
    # The start-up pass's first request is not answered while the test runs (nor given up
    # on): READY=1 goes once its wait for the pass is over (10 s; 1 s here), with the line as
    # it is then.
    fake_ccv.hold = asyncio.Event()
    cfg.write_text(cfg.read_text().replace('timeout = "2s"', 'timeout = "1m"'))
    with NotifySocket.abstract() as sock:
        async with daemon_here(cfg, {**_ENV, **sock.env()}, ticks=Ticks(ready_s=1.0)):
            ready = await sock.wait_for_async("READY", "1", timeout_s=20)
    assert ready[-1].fields["STATUS"] == "failing ccv/default; last pass starting"


async def test_an_idle_ccv_account_whose_ccv_hangs_holds_no_other_account_back(
    tmp_path: Path,
) -> None:
    # The start-up pass began after the heartbeats of the accounts it asks nothing: an idle
    # account whose CCV hung kept every other account unasked for its timeout and retries
    # (about a minute by default), and daemon.ready waited 10 s for the pass.
    async with FakeCCV() as idle, FakeCCV() as busy:
        busy.orders = {"B-1": "Processing"}
        idle.hold = asyncio.Event()
        cfg = tmp_path / "reconciler.toml"
        accounts = [
            f'[[ccv]]\nname = "{name}"\nbase_url = "{fake.base_url}"\napi_key = "{CCV_KEY}"\n'
            f'timeout = "60s"\nretries = 0\n{_SLOW}\n'
            for name, fake in (("idle", idle), ("busy", busy))
        ]
        cfg.write_text(
            f'[store]\npath = "{tmp_path / "reconciler.db"}"\n'
            + "".join(accounts)
            + f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "events.jsonl"}"\n'
        )
        cfg.chmod(0o600)
        track = ("--config", cfg, "track", "ccv", "--account", "busy", "B-1")
        assert (await call_cli(*track, env=_ENV)).code == 0
        try:
            async with daemon_here(cfg, _ENV):
                await idle.wait_until(lambda: idle.in_flight == 1, 20)
                await poll_until(
                    lambda: [e for e in read_events(tmp_path) if e["subject"] == "B-1"],
                    10,
                    "the busy account's event",
                )
                still_waiting = idle.in_flight
                [event] = [e for e in read_events(tmp_path) if e["subject"] == "B-1"]
        finally:
            idle.hold.set()
    assert still_waiting == 1  # the idle account's heartbeat had no answer yet
    assert event["data"]["via"] == "catch-up"  # the start-up pass's, not a scheduled poll's
    assert [s.order_id for s in idle.requests] == [PROBE_ORDER_ID]
