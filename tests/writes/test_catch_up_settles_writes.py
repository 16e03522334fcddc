"""Without a daemon, `catch-up` settles the writes a killed command left `sending` (a CCV
submit, a CCNow action), as a daemon's start and the next write command do: a host that only
runs the catch-up timer hears of them from that catch-up. A real `reconciler` process is
SIGKILLed while the fake holds its post, unanswered."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, call_cli, cli_env, free_port, read_events, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import FakeCCNow
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import A, commands, query


@pytest.fixture
async def fake_ccv() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


async def killed_while_posting(
    cfg: Path, args: list[str], posted: Callable[[], Awaitable[None]], stdin: bytes = b""
) -> None:
    """Run `reconciler ARGS` as a process of its own and SIGKILL it once its post arrived."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler",
        "--config",
        str(cfg),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=cli_env(),
        cwd=REPO,
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    try:
        await posted()
    finally:
        proc.kill()
        assert await proc.wait() == -9


def types(tmp_path: Path) -> list[str]:
    return [e["type"] for e in read_events(tmp_path)]


async def test_catch_up_makes_an_interrupted_adjust_uncertain_and_delivers_its_event(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.hold = asyncio.Event()
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    await killed_while_posting(
        cfg,
        ["ccnow", "adjust", A, "--amount", "3.00"],
        lambda: fake_ccnow.wait_until(lambda: len(fake_ccnow.requests) == 1, 30),
    )
    fake_ccnow.hold.set()  # CCNow applies it, to a caller that is gone
    fake_ccnow.hold = None
    assert [s for _, s, _ in commands(tmp_path)] == ["sending"]

    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    assert commands(tmp_path) == [(A, "uncertain", "interrupted")]
    uncertain = [e for e in read_events(tmp_path) if e["type"] == "order.action_uncertain"]
    assert [(e["data"]["action"], e["data"]["command_id"]) for e in uncertain] == [("adjust", 1)]
    # Never sent again: neither the catch-up nor the next command line posts it.
    again = await call_cli("--config", cfg, "ccnow", "adjust", A, "--amount", "3.00")
    assert again.code == 75
    posted = [r.form.get("x_action_1") for r in fake_ccnow.requests]
    assert posted.count("adjust") == 1
    assert types(tmp_path).count("order.action_uncertain") == 1


async def test_catch_up_queues_an_interrupted_ship_again(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.hold = asyncio.Event()
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    await killed_while_posting(
        cfg,
        ["ccnow", "ship", A],
        lambda: fake_ccnow.wait_until(lambda: len(fake_ccnow.requests) == 1, 30),
    )
    fake_ccnow.hold.set()
    fake_ccnow.hold = None

    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    # Safe to send again: queued and due at once, for the daemon or the next command line.
    assert query(tmp_path, "SELECT state, answer, next_attempt_at FROM commands") == [
        ("queued", "interrupted", 0.0)
    ]
    assert not [t for t in types(tmp_path) if t.startswith("order.action")]


async def test_catch_up_makes_an_interrupted_ccv_submit_uncertain_and_delivers_its_event(
    tmp_path: Path, fake_ccv: FakeCCVWrites
) -> None:
    fake_ccv.submit_hold = asyncio.Event()
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=api_toml(free_port()))
    body = json.dumps(submit_body(externalReference="shop-7")).encode()
    await killed_while_posting(
        cfg,
        ["ccv", "submit", "-"],
        lambda: fake_ccv.wait_until(lambda: len(fake_ccv.submits) == 1, 30),
        stdin=body,
    )
    fake_ccv.submit_hold.set()
    assert query(tmp_path, "SELECT state FROM submissions") == [("sending",)]

    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [
        ("uncertain", "interrupted")
    ]
    uncertain = [e for e in read_events(tmp_path) if e["type"] == "order.submit_uncertain"]
    assert [e["data"]["external_reference"] for e in uncertain] == ["shop-7"]
    assert len(fake_ccv.submits) == 1
