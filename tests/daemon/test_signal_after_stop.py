"""A signal that comes after the daemon's stop finished, while the process winds down to its
exit: the stop was clean, and so is the exit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from reconciler import eventloop
from tests.conftest import REPO, call_cli, cli_env, daemon, poll_until, write_config
from tests.fake_providers import FakeCCNow, FakeCCV


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGHUP])
async def test_a_signal_after_the_stop_finished_leaves_the_exit_clean(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow, second: signal.Signals
) -> None:
    # `kill -TERM`, then a Ctrl-C or a closed terminal while it exits: 130 or 129 after a
    # clean stop (the default actions were back while the process wound down).
    fake_ccv.orders = {"ORDER-1": "New"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccv", "ORDER-1")).code == 0
    log = tmp_path / "daemon.log"
    async with daemon(cfg, cli_env()) as proc:
        await poll_until(lambda: log.exists() and "daemon.ready" in log.read_text(), 20, "ready")
        proc.send_signal(signal.SIGTERM)
        # Polled tightly: the window between the stop's last line and the exit is short.
        deadline = time.monotonic() + 20
        while "daemon.stopped" not in log.read_text():
            assert time.monotonic() < deadline, "no daemon.stopped within 20 s"
            await asyncio.sleep(0.001)
        if proc.returncode is None:
            proc.send_signal(second)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert "daemon.force_exit" not in log.read_text()


@pytest.mark.parametrize("delay_s", [0.025, 0.075, 0.15])
@pytest.mark.parametrize("loop", ["auto", "asyncio"])
async def test_sigterm_repeated_within_its_echo_window_leaves_the_exit_clean(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow, loop: str, delay_s: float
) -> None:
    # Review 29i item 3: a SIGTERM 25-150 ms after the first (timeout(1)'s echo) ended `run`
    # with 143 once it had returned: Python's exit put SIGTERM's default action back (README:
    # the echo is ignored). One echo, as timeout sends it, at a moment of that span.
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    log = tmp_path / "daemon.log"
    async with daemon(cfg, cli_env(RECONCILER_EVENT_LOOP=loop)) as proc:
        await poll_until(lambda: log.exists() and "daemon.ready" in log.read_text(), 20, "ready")
        proc.send_signal(signal.SIGTERM)
        reaped = asyncio.ensure_future(proc.wait())
        await asyncio.wait({reaped}, timeout=delay_s)
        if not reaped.done():
            # os.kill, not send_signal, which reaps the process itself (asyncio then says 255).
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        assert await asyncio.wait_for(reaped, 10) == 0
    assert "daemon.stopped" in log.read_text()
    assert "daemon.force_exit" not in log.read_text()


# The daemon, with what follows its stop made to hang where it could (closing the store and
# sinks; the last steps of run_daemon; asyncio.run's wait for its threads, as a DNS lookup
# that never ends holds it), or a failed start's unwind held until a line comes on stdin,
# saying so on stderr.
HANGING = """
import asyncio, sys, time
from reconciler import cli, daemon, runtime, systemd

async def store_and_sinks(self, *exc):
    print("hanging: closing the store and sinks", file=sys.stderr, flush=True)
    await asyncio.Event().wait()

def last_steps(self):
    print("hanging: last steps", file=sys.stderr, flush=True)
    time.sleep(3600)

async def threads(self, *args):
    print("hanging: waiting for the loop's threads", file=sys.stderr, flush=True)
    await asyncio.Event().wait()

def until_told(self):
    print("hanging: unwinding the failed start", file=sys.stderr, flush=True)
    sys.stdin.readline()

stop_serving = daemon.Daemon._shutdown

async def serving_until_told(self, delivering):
    await stop_serving(self, delivering)
    print("hanging: the failed start stops serving", file=sys.stderr, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

if sys.argv[1] == "store":
    runtime.Runtime.__aexit__ = store_and_sinks
elif sys.argv[1] == "last":
    systemd.Notifier.close = last_steps
elif sys.argv[1] == "threads":  # on asyncio's loop: uvloop's methods cannot be replaced
    asyncio.BaseEventLoop.shutdown_default_executor = threads
else:
    systemd.Notifier.close = until_told
if sys.argv[1] == "serving":
    daemon.Daemon._shutdown = serving_until_told
cli.main(sys.argv[2:])
"""


async def hanging(
    where: str, cfg: Path, env: dict[str, str], *, stdin: int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    with (cfg.parent / "daemon.log").open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", HANGING, where, "--config", str(cfg), "run",
            stdin=stdin, stderr=out, env=env, cwd=REPO,
        )  # fmt: skip


# Each place it may hang with a Ctrl-C and with a SIGTERM past its echo window; a SIGHUP takes
# the Ctrl-C's path (run_daemon's on_signal, no echo to tell), so once, where the loop's own
# handlers are gone (`last`: the one signal.signal put back).
HANGS = [
    *((second, where) for second in ("INT", "TERM") for where in ("store", "last", "threads")),
    ("HUP", "last"),
]


@pytest.mark.parametrize(("second", "where"), HANGS, ids=[f"{s}-{w}" for s, w in HANGS])
async def test_a_signal_after_the_stop_ends_an_exit_that_hangs(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow, second: str, where: str
) -> None:
    # After daemon.stopped every signal was ignored: an exit that hung ended only by SIGKILL.
    # Then a SIGTERM once run_daemon had returned killed it (143): SIGTERM's default was back.
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    log = tmp_path / "daemon.log"
    loop = "asyncio" if where == "threads" else "auto"
    proc = await hanging(where, cfg, cli_env(RECONCILER_EVENT_LOOP=loop))
    try:
        await poll_until(lambda: "daemon.ready" in log.read_text(), 20, "ready")
        proc.send_signal(signal.SIGTERM)
        await poll_until(lambda: "hanging: " in log.read_text(), 20, "the hang after the stop")
        if second == "TERM":
            # Out of the first one's echo window (README): taken as timeout(1)'s echo within it.
            await asyncio.sleep(eventloop.SigtermEcho.ECHO_S)
        proc.send_signal(signal.Signals[f"SIG{second}"])
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "daemon.stopped" in log.read_text()
    assert "daemon.force_exit" not in log.read_text()


async def test_signals_while_a_failed_start_unwinds_leave_its_error_and_exit_code(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The receiver's port is taken (75). A TERM or HUP while that start unwound killed it (143,
    # 129; a clean exit to systemd, which then restarted nothing), an INT made it 130, and the
    # line saying why it did not start was lost.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listen = f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1"\n'
        cfg = write_config(tmp_path, ccv=fake_ccv, extra=listen)
        env = cli_env(RECONCILER_RECEIVER_SECRET="s" * 32)
        proc = await hanging("failed", cfg, env, stdin=asyncio.subprocess.PIPE)
        try:
            log = tmp_path / "daemon.log"
            await poll_until(lambda: "hanging: " in log.read_text(), 20, "the failed start")
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                proc.send_signal(sig)
            assert proc.stdin is not None
            proc.stdin.write(b"go on\n")
            await proc.stdin.drain()
            assert await asyncio.wait_for(proc.wait(), 10) == 75
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert f"reconciler: receiver cannot listen on 127.0.0.1:{port}: " in log.read_text()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
async def test_a_signal_while_a_failed_start_stops_serving_does_not_make_it_a_clean_stop(
    tmp_path: Path, fake_ccv: FakeCCV, second: signal.Signals
) -> None:
    # The receiver's port is taken (75). A signal while serve's own unwind ran marked the daemon
    # stopped: run_daemon then kept its handler, and a second signal exited 0 at once, a clean
    # exit to systemd (which then restarted nothing) with the start's error line lost.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listen = f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1"\n'
        cfg = write_config(tmp_path, ccv=fake_ccv, extra=listen)
        env = cli_env(RECONCILER_RECEIVER_SECRET="s" * 32)
        proc = await hanging("serving", cfg, env, stdin=asyncio.subprocess.PIPE)
        assert proc.stdin is not None
        log = tmp_path / "daemon.log"
        try:
            await poll_until(lambda: "stops serving" in log.read_text(), 20, "serve's unwind")
            proc.send_signal(signal.SIGTERM)
            await poll_until(lambda: "daemon.signal" in log.read_text(), 20, "the first signal")
            proc.stdin.write(b"go on\n")
            await proc.stdin.drain()
            await poll_until(lambda: "hanging: unwinding" in log.read_text(), 20, "last steps")
            if second == signal.SIGTERM:
                # Out of the first one's echo window (README): taken as timeout(1)'s echo within it.
                await asyncio.sleep(eventloop.SigtermEcho.ECHO_S)
            proc.send_signal(second)
            proc.stdin.write(b"go on\n")
            await proc.stdin.drain()
            assert await asyncio.wait_for(proc.wait(), 10) == 75
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert f"reconciler: receiver cannot listen on 127.0.0.1:{port}: " in log.read_text()
