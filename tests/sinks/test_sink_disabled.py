"""A sink its receiver disabled (410 Gone) is said `sink.disabled` (error) once, when it happens,
not again at each catch-up or start (an alert on it fired every run): a later run finds it
`sink.still_disabled` (warning), and `status` says since when. The commands and the daemon
as the console script runs them (in this process: what is tested is what each start says, not
the process), a real receiver on 127.0.0.1 and the real database file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import (
    WEBHOOK_SECRET,
    WebhookEndpoint,
    call_cli,
    daemon_here,
    poll_until,
    serving,
    webhook_env,
    webhook_sink,
    write_config,
)
from tests.fake_providers import FakeCCV

ORDER = "9a8b7c6d-0000-4000-8000-000000000001"


@dataclass
class Gone(WebhookEndpoint):
    """A receiver that answers every event 410 Gone."""

    attempts: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.attempts.append(request.headers["webhook-id"])
        return web.Response(status=410)


@pytest.fixture
async def gone() -> AsyncIterator[Gone]:
    async with serving(Gone()) as endpoint:
        yield endpoint


def said(lines: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["message"] == message]


def log_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_a_disabled_sink_is_said_once_and_found_so_at_each_later_start(
    tmp_path: Path, fake_ccv: FakeCCV, gone: Gone
) -> None:
    fake_ccv.orders = {ORDER: "New"}
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=webhook_sink(gone.url, timeout="2s"))
    env = webhook_env()
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER, env=env)).code == 0

    first = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "5s", env=env)
    assert first.code == 75, first.stderr  # the event stays undelivered to the sink
    assert len(gone.attempts) == 1
    (disabled,) = said(first.log_lines(), "sink.disabled")
    assert (disabled["level"], disabled["sink"], disabled["reason"]) == (
        "error",
        "webhook",
        "http 410",
    )
    assert not said(first.log_lines(), "sink.still_disabled")

    second = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "5s", env=env)
    assert second.code == 75, second.stderr
    assert len(gone.attempts) == 1  # nothing sent to it again
    assert not said(second.log_lines(), "sink.disabled"), second.stderr
    (still,) = said(second.log_lines(), "sink.still_disabled")
    assert (still["level"], still["sink"], still["reason"]) == ("warning", "webhook", "http 410")
    assert still["disabled_at"] <= second.log_lines()[-1]["time"]
    assert still["hint"] == disabled["hint"]

    status = await call_cli("--config", cfg, "status", "--json", env=env)
    assert status.code == 0, status.stderr
    (sink,) = [s for s in json.loads(status.stdout)["sinks"] if s["name"] == "webhook"]
    assert (sink["disabled"], sink["disabled_since"]) == ("http 410", still["disabled_at"])
    text = await call_cli("--config", cfg, "status", env=env)
    (row,) = [line for line in text.stdout.splitlines() if line.startswith("webhook ")]
    assert row.split()[-3:] == ["410", "since", still["disabled_at"]]

    # The daemon's start: the same, once.
    log = tmp_path / "daemon.log"
    async with daemon_here(cfg, env) as running:
        await poll_until(
            lambda: said(log_lines(log), "sink.still_disabled"), 60, "sink.still_disabled"
        )
        assert await running.stop() == 0
    lines = log_lines(log)
    assert not said(lines, "sink.disabled")
    assert len(said(lines, "sink.still_disabled")) == 1
    assert len(gone.attempts) == 1
    assert WEBHOOK_SECRET not in log.read_text() + first.stderr + second.stderr
