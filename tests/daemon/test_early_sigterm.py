"""A SIGTERM early in `run`'s start: from the moment the process takes SIGTERM at all, it is the
daemon's clean stop, 0 (README, `run`)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, daemon, write_config
from tests.fake_providers import FakeCCV


def catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process `pid` has a handler for `sig` (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (sig - 1) & 1)


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
async def test_a_sigterm_as_soon_as_it_is_caught_is_a_clean_stop(
    tmp_path: Path, fake_ccv: FakeCCV, loop: str
) -> None:
    # Review n4 item 3: `run` ran under the handler every command has (SIGTERM cancels it, then
    # the process ends by the signal) until the daemon set its own; a SIGTERM then, 0.25-0.85 s
    # into the start, was `daemon.signal` and then `reconciler: stopped by SIGTERM`, the process
    # ended by the signal (under asyncio's loop with a traceback of an aiosqlite thread).
    cfg = write_config(tmp_path, ccv=fake_ccv)
    log = tmp_path / "daemon.log"
    async with daemon(cfg, cli_env(RECONCILER_EVENT_LOOP=loop)) as proc:
        # Polled tightly: the signal is to come at the first moment a handler takes it.
        deadline = time.monotonic() + 30
        while not catches(proc.pid, signal.SIGTERM):
            assert proc.returncode is None, log.read_text()
            assert time.monotonic() < deadline, "SIGTERM not caught within 30 s"
            await asyncio.sleep(0.001)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0, log.read_text()
    lines = log.read_text().splitlines()
    assert "Traceback" not in log.read_text()
    messages = [json.loads(line.lstrip("<0123456789>"))["message"] for line in lines]
    assert messages[-3:] == ["daemon.signal", "daemon.stopping", "daemon.stopped"], lines
