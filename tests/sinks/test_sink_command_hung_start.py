"""A command sink whose program's exec hangs (a program on a hung network file system): the
event loop goes on, the delivery fails at the sink's `timeout`, and the program is killed when
its start ends at last. The exec is held for real, in the kernel (tests/exec_gate.py: a seccomp
filter hands the execve to a supervisor that answers when the test says so); asyncio's and
uvloop's subprocess start waited for it on the loop's thread, and the whole daemon froze."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from reconciler.sinks.base import Delivered, RetryLater
from tests.conftest import REPO, cli_env, free_port, poll_until, write_config
from tests.exec_gate import Gate, gate_problem
from tests.fake_providers import FakeCCNow
from tests.sinks.test_sink_command import alive

pytestmark = pytest.mark.skipif(gate_problem() is not None, reason=str(gate_problem()))

# The event ev-1's program sleeps (it must be killed), the others' exit 0.
PROGRAM = "import os, time; os.environ['RECONCILER_EVENT_ID'] == 'ev-1' and time.sleep(600)"

# Run under the gate on the loop named by argv[1]: delivers ev-1, whose exec the gate holds,
# then ev-2 while it still hangs, and says what came back and how the loop fared meanwhile;
# then, once told on stdin that the gate opened, waits until the late program is gone (killed
# and reaped by its start's thread: it sleeps for 600 s) and delivers ev-3.
SINK = """
import asyncio, json, os, sys, time
from pathlib import Path
from reconciler.config import CommandSinkConfig
from reconciler.sinks.base import OutboxEvent
from reconciler.sinks.command import CommandSink

def children():
    # A thread may end between the listing and the read: its file is then gone, and so is
    # anything it could have started.
    found = set()
    for f in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            found.update(f.read_text().split())
        except FileNotFoundError:
            pass
    return found

def event(n):
    return OutboxEvent(seq=n, id=f"ev-{n}", type="t", order_id="o", body=b"{}")

async def main():
    ticks = 0
    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
    ticker = asyncio.ensure_future(tick())
    before = children()  # the gate's supervisor
    command = (sys.executable, "-c", sys.argv[2])
    sink = CommandSink(CommandSinkConfig(name="hook", command=command, timeout_s=0.5))
    started = time.monotonic()
    first = await sink.deliver([event(1)])
    took = time.monotonic() - started
    second = await sink.deliver([event(2)])
    print(json.dumps({"first": repr(first), "second": repr(second), "took_s": took,
                      "ticks": ticks,
                      "programs": len(children() - before)}), flush=True)
    sys.stdin.readline()  # the gate opened
    deadline = time.monotonic() + 60
    while children() - before:
        assert time.monotonic() < deadline, "the late program lives on"
        await asyncio.sleep(0.01)
    third = await sink.deliver([event(3)])
    print(json.dumps({"third": repr(third)}), flush=True)
    ticker.cancel()

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_a_start_whose_exec_hangs_fails_at_the_timeout_and_its_program_dies_later(
    loop: str,
) -> None:
    with Gate() as gate:
        run = await asyncio.create_subprocess_exec(
            *gate.argv(sys.executable, "-c", SINK, loop, PROGRAM),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=[gate.fd],
            cwd=REPO,
        )
        gate.handed()
        assert run.stdin is not None and run.stdout is not None
        try:
            held = await gate.held(60)
            # The old start never came back while the exec hung: no line at all.
            said = json.loads(await asyncio.wait_for(run.stdout.readline(), 60))
            program = sys.executable
            assert said["first"] == repr(
                [RetryLater(f"cannot run: {program}: its start did not end within the timeout")]
            )
            # The retry waits for the start still hanging, never starts a second beside it.
            assert said["second"] == repr(
                [RetryLater(f"cannot run: {program}: an earlier start of it still hangs")]
            )
            assert said["programs"] == 1
            assert said["took_s"] < 20  # its 0.5 s timeout; a loaded machine's start on top
            assert said["ticks"] >= 10, said  # the loop ran all along
            assert alive(held)  # still in its exec

            gate.open()
            run.stdin.write(b"opened\n")
            await run.stdin.drain()
            said = json.loads(await asyncio.wait_for(run.stdout.readline(), 120))
            assert said["third"] == repr([Delivered()])
            assert not alive(held)
            assert await asyncio.wait_for(run.wait(), 30) == 0
        finally:
            gate.open()
            if run.returncode is None:
                run.kill()
                await run.wait()


async def test_the_daemon_answers_polls_and_stops_while_a_command_start_hangs(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The sink's timeout is the longest allowed, ten minutes: only the stop's cutoff ends the
    # hung delivery.
    port = free_port()
    fake_ccnow.orders = {"396-10-1142": "pending"}
    command = json.dumps([sys.executable, "-c", "pass"])
    cfg = write_config(
        tmp_path,
        ccnow=fake_ccnow,
        ccnow_extra='poll_interval = "0.5s"',
        extra=f'[[sinks]]\ntype = "command"\nname = "hook"\ncommand = {command}\n'
        f'timeout = "10m"\n\n[receiver]\nlisten = "127.0.0.1:{port}"\n'
        f'public_url = "http://127.0.0.1:{port}"\n',
    )
    env = cli_env(RECONCILER_RECEIVER_SECRET="s" * 32)
    log = tmp_path / "daemon.log"
    with Gate() as gate, log.open("ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *gate.argv(sys.executable, "-m", "reconciler", "--config", str(cfg), "run"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=REPO,
            pass_fds=[gate.fd],
        )
        gate.handed()
        try:
            await gate.held(60)  # the order's event, its program's exec held
            polls = len(fake_ccnow.requests)
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as answer,
            ):
                assert answer.status == 200, await answer.text()
            await poll_until(lambda: len(fake_ccnow.requests) >= polls + 2, 30, "more polls")

            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            assert time.monotonic() - started < 20  # the sinks' 4 s of the stop, and a margin
        finally:
            gate.open()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert '"daemon.stopped"' in log.read_text()
