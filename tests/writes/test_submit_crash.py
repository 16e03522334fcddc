"""CCV submit through the daemon: SIGKILL of a real daemon process between recording and
sending, and between sending and closing, leaves a submission the next start makes uncertain,
never sends again; `reconciler ccv submit` for scripts, with and without a running daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.config import ReceiverConfig, Secret
from reconciler.notify import notification_url
from tests.conftest import (
    call_cli,
    cli_env,
    daemon,
    daemon_here,
    free_port,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_ccv_writes import DROP, FakeCCVWrites, submit_body
from tests.fake_providers import CCV_KEY, FakeCCV, Reply
from tests.server.test_api import PUBLIC_URL, RECEIVER_SECRET, TOKEN, api_toml

ORDER = "7d0e9f52-3c1b-4a8e-9d2f-6b5a4c3d2e1f"
UNCERTAIN = "order.submit_uncertain"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    """CCV's status, submit and pricing calls on 127.0.0.1."""
    async with FakeCCVWrites() as fake:
        yield fake


def query(tmp_path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Read the daemon's database (committed rows only)."""
    path = tmp_path / "reconciler.db"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def submission_state(tmp_path: Path, reference: str) -> str | None:
    rows = query(tmp_path, "SELECT state FROM submissions WHERE external_reference = ?", reference)
    return rows[0][0] if rows else None


async def submit(port: int, body: object) -> tuple[int, Any]:
    """POST a submit to the daemon's API; return status and JSON body."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}/api/v1/ccv/orders", json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def listening(port: int) -> None:
    """Wait until the daemon's API accepts connections: a daemon's start (its imports, its
    catch-up) takes seconds alone and far longer on a loaded machine, so the deadline is long."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"nothing listens on {port}")


async def test_a_crash_after_recording_leaves_an_uncertain_submit_never_sent(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    body = submit_body(externalReference="shop-1")
    async with daemon(cfg, cli_env(RECONCILER_FAILPOINT="submit.recorded")) as proc:
        await listening(port)
        with pytest.raises(aiohttp.ClientError):
            await submit(port, body)
        assert await asyncio.wait_for(proc.wait(), 60) == -signal.SIGKILL
    assert submission_state(tmp_path, "shop-1") == "sending"

    async with daemon_here(cfg):
        await listening(port)  # the interrupted submit is settled before the API listens
        assert submission_state(tmp_path, "shop-1") == "uncertain"
        status, answer = await submit(port, body)
        assert (status, answer["state"]) == (409, "uncertain")
        # A person finds the order at CCV and tracks it with its reference.
        result = await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "shop-1")
        assert result.code == 0, result.stderr
        assert submission_state(tmp_path, "shop-1") == "resolved"
        await poll_until(
            lambda: any(e["type"] == UNCERTAIN for e in read_events(tmp_path)), 60, "event"
        )
    assert fake.submits == []
    assert [
        e["data"]["external_reference"] for e in read_events(tmp_path) if e["type"] == UNCERTAIN
    ] == ["shop-1"]


async def test_a_crash_while_ccv_holds_the_submit_is_settled_by_its_notification(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    port, receiver_port = free_port(), free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port, receiver_port=receiver_port))
    fake.submit_hold = asyncio.Event()
    async with daemon(cfg, cli_env()) as proc:
        await listening(port)
        pending = asyncio.ensure_future(submit(port, submit_body(externalReference="shop-2")))
        await fake.wait_until(lambda: len(fake.submits) == 1, 10)
        proc.kill()
        await proc.wait()
        with pytest.raises(aiohttp.ClientError):
            await pending
    assert submission_state(tmp_path, "shop-2") == "sending"

    async with daemon_here(cfg):
        await listening(port)
        assert submission_state(tmp_path, "shop-2") == "uncertain"
        fake.submit_hold.set()  # CCV made the order after all, and notifies its reference
        receiver = ReceiverConfig("127.0.0.1", receiver_port, PUBLIC_URL, Secret(RECEIVER_SECRET))
        url = notification_url(receiver, "default", reference="shop-2")
        local = url.replace(PUBLIC_URL, f"http://127.0.0.1:{receiver_port}/reconciler")
        await listening(receiver_port)
        async with aiohttp.ClientSession() as http, http.post(local) as resp:
            assert resp.status == 202
        await poll_until(lambda: submission_state(tmp_path, "shop-2") == "resolved", 60, "resolved")
    assert len(fake.submits) == 1
    assert query(tmp_path, "SELECT count(*) FROM events WHERE type = ?", UNCERTAIN) == [(1,)]
    assert query(tmp_path, "SELECT count(*) FROM orders") == [(0,)]


async def test_ccv_submit_command_prints_the_order_id_and_tracks_it(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    (tmp_path / "order.json").write_text(json.dumps(submit_body(externalReference="cli-1")))
    result = await call_cli("--config", cfg, "ccv", "submit", tmp_path / "order.json")
    assert result.code == 0, result.stderr
    order_id = result.stdout.strip()
    assert fake.orders[order_id] == "Processing"
    assert query(tmp_path, "SELECT order_id, external_reference FROM orders") == [
        (order_id, "cli-1")
    ]
    # The same reference again: refused, nothing sent.
    result = await call_cli("--config", cfg, "ccv", "submit", tmp_path / "order.json")
    assert result.code == 65 and "submitted already" in result.stderr
    # A body reconciler refuses: 65, naming the field.
    bad = json.dumps({"notifyCustomerByEmail": "yes", "order": {}}).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=bad)
    assert result.code == 65 and "notifyCustomerByEmail" in result.stderr
    # Text Python's json takes but JSON does not: refused before anything is recorded.
    for raw in (
        b'{"notifyCustomerByEmail": true, "order": {"x": NaN}}',
        rb'{"order": {"x": "\ud800"}}',
    ):
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=raw)
        assert result.code == 65 and "not JSON" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert len(fake.submits) == 1
    assert query(tmp_path, "SELECT count(*) FROM submissions") == [(1,)]


async def test_ccv_submit_command_exits_78_when_the_config_cannot_submit(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    stdin = json.dumps(submit_body(externalReference="cli-3")).encode()
    # No [receiver]: nothing could sign the order's notification URL.
    result = await call_cli(
        "--config", write_config(tmp_path, ccv=fake), "ccv", "submit", "-", stdin=stdin
    )
    assert result.code == 78 and "[receiver]" in result.stderr, result.stderr
    # README: exit 78 is one line `config error: <file>: <key>: <problem>`.
    assert result.stderr.startswith(f"config error: {tmp_path / 'reconciler.toml'}: receiver: ")
    assert len(result.stderr.strip().splitlines()) == 1
    # CCV refuses the API key: trying again will not help, the key must change.
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    wrong_key = "t_wrong-ccv-key-000000"
    env = cli_env(RECONCILER_CCV_API_KEY=wrong_key)
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin, env=env)
    assert result.code == 78, result.stderr
    assert wrong_key not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert query(tmp_path, "SELECT count(*) FROM orders") == [(0,)]


async def test_ccv_submit_command_prints_ccvs_refusal_masked_and_bounded(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # A refusal that echoes the request, key included, with a page of detail after it.
    echo = f"invalid order; key={CCV_KEY}\n" + "x" * 20_000
    fake.submit_replies = [Reply(400, json.dumps({"message": echo}), "application/json")]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="cli-4")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 65, result.stderr
    assert "HTTP 400" in result.stderr and "invalid order" in result.stderr
    assert CCV_KEY not in result.stdout + result.stderr
    (line,) = [t for t in result.stderr.splitlines() if t.startswith("reconciler: submit")]
    assert len(line) < 1000


async def test_ccv_submit_command_goes_through_a_running_daemon(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    port = free_port()
    # Due orders are looked for every 0.5 s (half the shortest interval).
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port), ccv_extra='min_interval = "1s"')
    stdin = json.dumps(submit_body(externalReference="cli-2")).encode()
    async with daemon_here(cfg):
        await listening(port)
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        assert result.code == 0, result.stderr
        order_id = result.stdout.strip()
        assert fake.orders[order_id] == "Processing"
        # Tracked at once: the daemon's first check follows within seconds.
        await fake.wait_until(lambda: bool(fake.requests_for(order_id)), 15)


async def test_after_a_restore_a_new_uncertain_submit_never_gets_an_emitted_id(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # The README's backup -> restore: the restored store numbers its submissions again, and a
    # different lost submit must not take the id of the one emitted before the restore.
    db, backup = tmp_path / "reconciler.db", tmp_path / "backup.db"
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    await asyncio.to_thread(subprocess.run, ["sqlite3", str(db), f".backup '{backup}'"], check=True)
    for reference in ("lost-1", "lost-2"):
        fake.submit_replies = [Reply(DROP)]
        body = json.dumps(submit_body(externalReference=reference)).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=body)
        assert result.code == 75, result.stderr
        shutil.copyfile(backup, db)
        for suffix in ("-wal", "-shm"):
            db.with_name(db.name + suffix).unlink(missing_ok=True)
    uncertain = [e for e in read_events(tmp_path) if e["type"] == UNCERTAIN]
    assert [e["data"]["external_reference"] for e in uncertain] == ["lost-1", "lost-2"]
    assert uncertain[0]["id"] != uncertain[1]["id"]


async def test_replay_settles_first_what_a_killed_submit_left_sending(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # As every writer does at its start: while one holds the store, `status` says a submit
    # still `sending` is being sent, which is true only of the holder's own.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute(
            "INSERT INTO submissions (account, external_reference, state, created_at) "
            "VALUES ('default', 'S-3', 'sending', 1.0)"
        )
    result = await call_cli("--config", cfg, "replay", "--sink", "jsonl", "--undelivered")
    assert result.code == 0, result.stderr
    assert submission_state(tmp_path, "S-3") == "uncertain"
    assert [
        e["data"]["external_reference"] for e in read_events(tmp_path) if e["type"] == UNCERTAIN
    ] == ["S-3"]


@pytest.mark.parametrize("through", ["itself", "the daemon"])
async def test_a_submit_killed_while_ccv_answers_has_named_the_reference_it_made(
    tmp_path: Path, through: str
) -> None:
    # A file without externalReference: the reference is made at the submit; a process killed
    # while CCV answered (Ctrl-C, a CI cancel) had named it nowhere, and the same file sent
    # again would make a second order. Through a running daemon the command makes it, and the
    # daemon's log line is not the command's.
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeCCVWrites())
        fake.submit_hold = asyncio.Event()
        port = free_port()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
        if through == "the daemon":
            await stack.enter_async_context(daemon_here(cfg))
            await listening(port)
        body = tmp_path / "order.json"
        body.write_text(
            json.dumps({k: v for k, v in submit_body().items() if k != "externalReference"})
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            "--config",
            str(cfg),
            "ccv",
            "submit",
            str(body),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(),
        )
        assert proc.stderr is not None
        named = ""
        while "ccv.submit_sending" not in named:
            named = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert named, "no ccv.submit_sending line"
        await poll_until(lambda: len(fake.submits) == 1, 60, "the submit at CCV")
        proc.kill()
        await proc.wait()
        fake.submit_hold.set()
    assert json.loads(named)["external_reference"] == fake.submits[0]["externalReference"]


async def _held_submit(
    tmp_path: Path, fake: FakeCCVWrites, reference: str
) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
    """Start `reconciler ccv submit` against `fake`, which holds its answer until the test sets
    the event returned."""
    fake.submit_hold = hold = asyncio.Event()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    # CCV holds its answer until the command says it is stopping: on a loaded machine that
    # took longer than the usual 2 s timeout, which then ended the submit first.
    cfg.write_text(cfg.read_text().replace('timeout = "2s"', 'timeout = "30s"', 1))
    body = tmp_path / "order.json"
    body.write_text(json.dumps(submit_body(externalReference=reference)))
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "reconciler", "--config", str(cfg)),
        *("ccv", "submit", str(body)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    return proc, hold


async def _stderr_until(proc: asyncio.subprocess.Process, marker: bytes) -> bytes:
    """Read a command's stderr up to the line holding `marker`; return what was read."""
    assert proc.stderr is not None
    err = b""
    while marker not in err:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, err.decode()
        err += line
    return err


# Ctrl-C (exit 130), and SIGTERM (a script's `timeout`, a supervisor's stop), after which the
# process ends as SIGTERM ends it.
@pytest.mark.parametrize(("stop", "returncode"), [(signal.SIGINT, 130), (signal.SIGTERM, -15)])
async def test_ctrl_c_while_ccv_answers_lets_the_submit_end_and_records_its_answer(
    tmp_path: Path, stop: signal.Signals, returncode: int
) -> None:
    # Ctrl-C closed the store and the session under the write still out: the submit stayed
    # `sending` though CCV made the order, and asyncio printed "Task exception was never
    # retrieved" with a traceback. SIGTERM killed the command at once: `sending`, then
    # uncertain at the next writer's start.
    async with FakeCCVWrites() as fake:
        proc, hold = await _held_submit(tmp_path, fake, "ctrl-c-1")
        assert proc.stderr is not None
        await poll_until(lambda: len(fake.submits) == 1, 60, "the submit at CCV")
        proc.send_signal(stop)
        err = await _stderr_until(proc, b"daemon.writes_in_flight")
        hold.set()  # CCV answers once the command is stopping
        rest = await asyncio.wait_for(proc.stderr.read(), 60)
        assert await proc.wait() == returncode
    stderr = (err + rest).decode()
    assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr
    assert query(tmp_path, "SELECT state FROM submissions") == [("succeeded",)]
    assert query(tmp_path, "SELECT count(*) FROM orders") == [(1,)]


async def test_a_second_ctrl_c_while_the_submit_ends_stops_it_at_once(
    tmp_path: Path,
) -> None:
    # README: a second Ctrl-C interrupts the stop, asyncio's own rule. On Python 3.10 the
    # command's task then ended, in asyncio.run's last clean-up, with the first Ctrl-C's own
    # exception: "unhandled exception during asyncio.run() shutdown" and a traceback.
    async with FakeCCVWrites() as fake:
        proc, hold = await _held_submit(tmp_path, fake, "ctrl-c-2")
        assert proc.stderr is not None
        try:
            await poll_until(lambda: len(fake.submits) == 1, 60, "the submit at CCV")
            proc.send_signal(signal.SIGINT)
            # the first one is being taken
            err = await _stderr_until(proc, b"daemon.writes_in_flight")
            proc.send_signal(signal.SIGINT)  # CCV still holds its answer
            rest = await asyncio.wait_for(proc.stderr.read(), 60)
            assert await proc.wait() == 130
        finally:
            hold.set()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    stderr = (err + rest).decode()
    assert "unhandled exception" not in stderr and "_Interrupted" not in stderr, stderr
    # The write cut off ended after the store closed, "Task exception was never retrieved" (1
    # run in 3 on both Pythons; test_submit_second_ctrl_c.py holds it every run).
    assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr
