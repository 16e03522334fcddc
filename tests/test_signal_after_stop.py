"""A signal that comes after the daemon's stop finished, while the process winds down to its
exit: the stop was clean, and so is the exit."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

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


# The daemon, with what follows its stop made to hang where it could (closing the store and
# sinks; the last steps, where asyncio.run waits for its threads), saying so on stderr.
HANGING = """
import asyncio, sys, time
from reconciler import cli, runtime, systemd

async def store_and_sinks(self, *exc):
    print("hanging: closing the store and sinks", file=sys.stderr, flush=True)
    await asyncio.Event().wait()

def last_steps(self):
    print("hanging: last steps", file=sys.stderr, flush=True)
    time.sleep(3600)

if sys.argv[1] == "store":
    runtime.Runtime.__aexit__ = store_and_sinks
else:
    systemd.Notifier.close = last_steps
cli.main(sys.argv[2:])
"""


@pytest.mark.parametrize("where", ["store", "last"])
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGHUP], ids=["INT", "HUP"])
async def test_a_signal_after_the_stop_ends_an_exit_that_hangs(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow, where: str, second: signal.Signals
) -> None:
    # After daemon.stopped every signal was ignored: an exit that hung ended only by SIGKILL.
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    log = tmp_path / "daemon.log"
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HANGING, where, "--config", str(cfg), "run",
            stdin=asyncio.subprocess.DEVNULL, stderr=out, env=cli_env(), cwd=REPO,
        )  # fmt: skip
    try:
        await poll_until(lambda: "daemon.ready" in log.read_text(), 20, "ready")
        proc.send_signal(signal.SIGTERM)
        await poll_until(lambda: "hanging: " in log.read_text(), 20, "the hang after the stop")
        proc.send_signal(second)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "daemon.stopped" in log.read_text()
    assert "daemon.force_exit" not in log.read_text()
