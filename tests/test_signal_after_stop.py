"""A signal that comes after the daemon's stop finished, while the process winds down to its
exit: the stop was clean, and so is the exit."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, daemon, poll_until, write_config
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
