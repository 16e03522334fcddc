"""A command sink's program that exits and leaves a child running (started in the background,
its stderr elsewhere): the child is ended with the delivery, SIGTERM first, SIGKILL after a
bounded grace, not left to run on after the program, the delivery or reconciler's command.
Real programs, real children."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from reconciler.config import CommandSinkConfig
from reconciler.sinks.base import Cutoff, Delivered, OutboxEvent
from reconciler.sinks.command import CommandSink
from tests.conftest import call_cli, poll_until, write_config
from tests.fake_providers import FakeCCV

# A child that would run for a minute: it says when it has its SIGTERM handler, and when it is
# sent SIGTERM; a stubborn one goes on after it.
CHILD = """
import os, signal, sys, time
where, name, stubborn = sys.argv[1:]
def term(*_):
    open(os.path.join(where, name + ".term"), "w").close()
    if stubborn == "0":
        sys.exit(0)
signal.signal(signal.SIGTERM, term)
with open(os.path.join(where, name + ".pid"), "w") as f:
    f.write(str(os.getpid()))
print("ready", flush=True)
time.sleep(60)
"""

# The sink's program: starts the children in the background, their stderr not its own (so its
# delivery does not wait for them), and exits 0 once they are ready.
PROGRAM = """
import subprocess, sys
sys.stdin.read()
where, child = sys.argv[1:3]
for name in sys.argv[3:]:
    started = subprocess.Popen(
        [sys.executable, child, where, name, "1" if name == "stubborn" else "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert started.stdout.readline() == b"ready\\n"
sys.exit(0)
"""


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def command(tmp_path: Path, *children: str) -> list[str]:
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "program.py").write_text(PROGRAM)
    where = str(tmp_path)
    return [
        sys.executable,
        str(tmp_path / "program.py"),
        where,
        str(tmp_path / "child.py"),
        *children,
    ]


def pids(tmp_path: Path, *children: str) -> list[int]:
    return [int((tmp_path / f"{name}.pid").read_text()) for name in children]


@contextlib.contextmanager
def killed_after(tmp_path: Path) -> Iterator[None]:
    """Kill what a failing test left running (a minute's sleepers)."""
    try:
        yield
    finally:
        for path in tmp_path.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(path.read_text()), signal.SIGKILL)


async def test_what_a_program_left_running_ends_with_its_delivery(tmp_path: Path) -> None:
    config = CommandSinkConfig(
        type="command",
        name="hook",
        command=tuple(command(tmp_path, "polite", "stubborn")),
        timeout_s=30.0,
    )
    sink = CommandSink(config)
    event = OutboxEvent(seq=1, id="e-1", type="order.discovered", order_id="o", body=b"{}")
    with killed_after(tmp_path):
        assert await sink.deliver([event]) == [Delivered()]
        polite, stubborn = pids(tmp_path, "polite", "stubborn")
        # Both were asked first (SIGTERM); the one that went on was killed after the grace.
        assert (tmp_path / "polite.term").exists() and (tmp_path / "stubborn.term").exists()
        await poll_until(lambda: not running(polite) and not running(stubborn), 30, "the end")


async def test_a_catch_up_leaves_no_child_of_a_program_running(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    order = "9a8b7c6d-0000-4000-8000-000000000001"
    fake_ccv.orders = {order: "New"}
    argv = json.dumps(command(tmp_path, "polite"))
    sink = f'[[sinks]]\ntype = "command"\nname = "hook"\ncommand = {argv}\ntimeout = "30s"\n'
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sink)
    with killed_after(tmp_path):
        assert (await call_cli("--config", cfg, "track", "ccv", order)).code == 0
        result = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "30s")
        assert result.code == 0, result.stderr
        (polite,) = pids(tmp_path, "polite")
        assert (tmp_path / "polite.term").exists()
        await poll_until(lambda: not running(polite), 30, "the child's end")


async def test_a_stop_while_its_leftovers_end_keeps_the_programs_verdict(tmp_path: Path) -> None:
    # The program exited 0, then a stop (the cutoff's grace over) came while its stubborn child
    # had its grace: the event is delivered (its exit code decides), not given again later, and
    # the child is killed at once instead of after the grace.
    config = CommandSinkConfig(
        type="command",
        name="hook",
        command=tuple(command(tmp_path, "stubborn")),
        timeout_s=30.0,
    )
    sink = CommandSink(config, left_grace_s=60.0)
    event = OutboxEvent(seq=1, id="e-1", type="order.discovered", order_id="o", body=b"{}")
    cutoff = Cutoff(sink="hook")

    async def stop_in_the_grace() -> None:
        await poll_until((tmp_path / "stubborn.term").exists, 30, "the child's SIGTERM")
        cutoff.close(0.0)

    with killed_after(tmp_path):
        stopping = asyncio.ensure_future(stop_in_the_grace())
        results = await asyncio.wait_for(sink.deliver([event], cutoff), 30)
        await stopping
        assert results == [Delivered()]
        (stubborn,) = pids(tmp_path, "stubborn")
        await poll_until(lambda: not running(stubborn), 30, "the child's end")


async def test_the_wait_for_leftovers_reads_no_process_list(tmp_path: Path) -> None:
    # Each step of the wait probes the group (one call); reading every process's stat on the
    # event loop stalled the daemon for a third of a second a step on a host of 5,000 processes.
    reads: list[str] = []
    watching = [False]

    def hook(name: str, args: tuple[object, ...]) -> None:
        proc = name in ("open", "os.listdir", "os.scandir") and str(args[0]).startswith("/proc")
        if watching[0] and proc:
            reads.append(str(args[0]))

    sys.addaudithook(hook)  # cannot be removed: it records only while `watching`
    config = CommandSinkConfig(
        type="command",
        name="hook",
        command=tuple(command(tmp_path, "polite")),
        timeout_s=30.0,
    )
    sink = CommandSink(config)
    event = OutboxEvent(seq=1, id="e-1", type="order.discovered", order_id="o", body=b"{}")
    with killed_after(tmp_path):
        watching[0] = True
        try:
            assert await sink.deliver([event]) == [Delivered()]
        finally:
            watching[0] = False
        assert (tmp_path / "polite.term").exists()
        assert reads == []
