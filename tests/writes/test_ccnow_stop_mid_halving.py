"""A stop (SIGTERM) while a post of several CCNow actions that a bound on its size turned away
(413) is sent again in halves: the half on its way ends, answered; the halves not posted yet
stay queued, and every surface counts them so: the running daemon's API answer and the
command line's summary line through it (exit 75), `status --json`; a command line stopped by
SIGTERM itself ends as README says (143, `stopped by SIGTERM`), the same orders queued. A fake
CCNow on 127.0.0.1 answers 413 to a post over its bound, as a proxy before it, and holds the
first half's answer until the stop began."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from tests.conftest import (
    REPO,
    call_cli,
    cli_env,
    daemon_here,
    free_port,
    poll_until,
    write_config,
)
from tests.fake_providers import FakeCCNow, Seen
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import ARGS, A, B, C, commands
from tests.writes.test_submit_crash import listening

D = "399-10-1161"
ORDERS = [A, B, C, D]
# Two orders' tracking post fits the fake's bound (400 bytes); four orders' does not.
MAX_POST_BYTES = 400


def _first_half(seen: Seen) -> bool:
    """The post of the first half, A and B (not the daemon's queries of the orders)."""
    form = seen.form
    return (
        form.get("x_action_1") == "track"
        and form.get("x_orderid_1") == A
        and ("x_orderid_3" not in form)
    )


def _held(fake: FakeCCNow) -> bool:
    return any(map(_first_half, fake.requests)) and fake.in_flight > 0


async def _queued_writes(cfg: Path) -> int:
    found = json.loads((await call_cli("--config", cfg, "status", "--json")).stdout)
    [entry] = [a for a in found["accounts"] if a["source"] == "ccnow"]
    return int(entry["queued_writes"])


async def test_a_daemon_stopped_mid_halving_answers_the_halves_not_posted_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = dict.fromkeys(ORDERS, "pending")
    fake_ccnow.max_post_bytes = MAX_POST_BYTES
    fake_ccnow.answer_late = _first_half
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    async with daemon_here(cfg) as here:
        await listening(port)
        track = asyncio.ensure_future(
            call_cli("--config", cfg, "ccnow", "add-tracking", *ORDERS, *ARGS["add-tracking"])
        )
        await fake_ccnow.wait_until(lambda: _held(fake_ccnow), 30)
        here.stopping.set()  # the stop SIGTERM starts
        log = tmp_path / "daemon.log"
        await poll_until(lambda: b"daemon.stopping" in log.read_bytes(), 60, "the stop")
        fake_ccnow.release.set()
        assert await asyncio.wait_for(here.wait(), 30) == 0
        result = await track
    assert result.code == 75, result.stdout + result.stderr
    assert "sent 2, done 2, refused 0, uncertain 0, queued 2" in result.stderr, result.stderr
    states = {o: state for o, state, _ in commands(tmp_path)}
    assert states == {A: "succeeded", B: "succeeded", C: "queued", D: "queued"}
    assert [o for o, _, _ in fake_ccnow.actions] == [A, B]
    assert await _queued_writes(cfg) == 2


async def test_a_command_line_stopped_mid_halving_leaves_the_halves_not_posted_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = dict.fromkeys(ORDERS, "pending")
    fake_ccnow.max_post_bytes = MAX_POST_BYTES
    fake_ccnow.answer_late = _first_half
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "reconciler", "--config", str(cfg), "ccnow", "add-tracking"),
        *ORDERS,
        *ARGS["add-tracking"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        cwd=REPO,
    )
    try:
        assert proc.stderr is not None
        await fake_ccnow.wait_until(lambda: _held(fake_ccnow), 30)
        proc.send_signal(signal.SIGTERM)
        err = b""
        # Released once the stop waits for the write out: the half posted is answered.
        while b"daemon.writes_in_flight" not in err:
            line = await asyncio.wait_for(proc.stderr.readline(), 10)
            assert line, err.decode()
            err += line
        fake_ccnow.release.set()
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGTERM
    assert "reconciler: stopped by SIGTERM" in (err + rest).decode()
    assert fake_ccnow.batch_sizes == [4, 2]
    states = {o: state for o, state, _ in commands(tmp_path)}
    assert states == {A: "succeeded", B: "succeeded", C: "queued", D: "queued"}
    assert await _queued_writes(cfg) == 2
    # The next run posts them, and them alone.
    again = await call_cli("--config", cfg, "ccnow", "add-tracking", *ORDERS, *ARGS["add-tracking"])
    assert again.code == 0, again.stdout + again.stderr
    assert sorted(o for o, _, _ in fake_ccnow.actions) == ORDERS
