"""Start-up: a command's process imports what its command uses, not every command's body."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, call_cli, cli_env, read_events, write_config
from tests.fake_providers import FakeCCV

ORDER = "3c2b1a00-0000-4000-8000-000000000001"

# Run one command line as the console script does, then print the modules loaded.
_MODULES_AFTER = """
import json, sys
from reconciler import cli
code = cli.run(sys.argv[1:])
modules = sorted(sys.modules)
print(json.dumps({"code": code, "modules": modules}))
"""

# What other commands need (status report, demo, sandbox, API server, CCV writes, order listings).
NOT_FOR_A_CATCH_UP = (
    "reconciler.commands.status",
    "reconciler.commands.status_report",
    "reconciler.commands.status_text",
    "reconciler.commands.orders",
    "reconciler.commands.events",
    "reconciler.commands.replay",
    "reconciler.commands.check",
    "reconciler.commands.ccv",
    "reconciler.commands.ccnow",
    "reconciler.commands.demo",
    "reconciler.commands.sandbox",
    "reconciler.sandbox",
    "reconciler.server",
    "reconciler.writes",
    "reconciler.order_view",
)

# A source's client and coordinator, loaded only when an account of it is configured
# (poller/coordinators.py): a catch-up of CCV accounts alone asks nothing of CCNow.
CCNOW_CLIENT = ("reconciler.sources.ccnow", "reconciler.poller.ccnow")

# `status`'s report (with the pollers' and sinks' health it reads), and the bodies of `track`,
# `untrack` and `orders`; the HTTP client, the daemon's scheduler and its metrics.
STATUS_REPORT = "reconciler.commands.status_report"
TRACKING = "reconciler.commands.orders"
NO_STORE_COMMAND_ASKS = ("aiohttp", "apscheduler", "prometheus_client")


async def _modules_after(*args: str) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _MODULES_AFTER,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out.decode().splitlines()[-1])
    return result["code"], result["modules"]


async def test_a_catch_up_does_not_import_the_other_commands(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {ORDER: "AwaitingPayment"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0

    code, modules = await _modules_after("--config", str(cfg), "catch-up")

    assert code == 0
    assert [(e["type"], e["subject"]) for e in read_events(tmp_path)] == [
        ("order.discovered", ORDER)
    ]
    assert "reconciler.commands.catch_up" in modules
    loaded = [m for m in modules if m.startswith(NOT_FOR_A_CATCH_UP)]
    assert loaded == []
    assert [m for m in modules if m.startswith(CCNOW_CLIENT)] == []


@pytest.mark.parametrize(
    ("command", "not_for_it"),
    [
        ("check", (STATUS_REPORT, TRACKING)),
        ("events", (STATUS_REPORT, TRACKING)),
        ("orders", (STATUS_REPORT,)),
    ],
)
async def test_a_command_reading_the_store_loads_no_other_commands_report_or_http(
    tmp_path: Path, fake_ccv: FakeCCV, command: str, not_for_it: tuple[str, ...]
) -> None:
    # An order's status is shown in words `status` uses too, and `check` peeks at the store as
    # `orders` opens it: neither is a reason to load the other command.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0

    code, modules = await _modules_after("--config", str(cfg), command)

    assert code == 0
    assert f"reconciler.commands.{command}" in modules
    assert [m for m in modules if m.startswith((*not_for_it, *NO_STORE_COMMAND_ASKS))] == []
