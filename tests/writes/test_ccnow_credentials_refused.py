"""A CCNow action whose answer says the credentials were refused (`error_message invalid
password`, read as `check --online` reads the same answer): the command line exits 78 with one
clear line, the API answers 202 with the command queued and `credentials_refused`, and the
command stays queued without a `ccnow.action_retry_later` line per attempt: one warning, no
post while the account's health says it fails, sent once the account answers again."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_actions import ActionSender, build
from tests.conftest import Clock, call_cli, cli_env, run_cli
from tests.fake_ccv_writes import FakeCCVWrites
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.server.test_api import serve_api
from tests.writes.test_ccnow_actions import commands, tracked

A = "396-10-1142"
ROTATED = "rotated-ccnow-password-5b2d"


def logged(stderr: str, message: str) -> list[dict[str, Any]]:
    found = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    return [x for x in found if x["message"] == message]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("error_message invalid password\n", 78),
        ("error_message Login failed for client amylove\n", 78),
        ("message invalid login\n", 78),
        # CCNow down, whatever it names: an outage to both, retried later.
        ("error_message login server down for maintenance\n", 75),
    ],
)
async def test_an_action_refused_for_its_credentials_exits_as_check_online_does(
    tmp_path: Path, fake_ccnow: FakeCCNow, body: str, code: int
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.always = Reply(200, body)
    check = await run_cli("--config", cfg, "check", "--online", env=cli_env())
    shipped = await run_cli("--config", cfg, "ccnow", "ship", A, env=cli_env())
    assert (check.code, shipped.code) == (code, code), shipped.stderr
    [(order_id, state, answer)] = commands(tmp_path)
    assert (order_id, state) == (A, "queued")  # kept for a fixed password
    for text in (shipped.stdout, shipped.stderr, (tmp_path / "reconciler.db").read_bytes()):
        assert CCNOW_PASSWORD not in str(text)
    if code != 78:
        assert len(logged(shipped.stderr, "ccnow.action_retry_later")) == 1
        return
    assert answer is not None and answer.startswith("credentials refused (")
    assert shipped.stdout.startswith(f"{A} ship queued: credentials refused (")
    errors = [x for x in shipped.stderr.splitlines() if x.startswith("reconciler: error:")]
    assert errors == [
        f"reconciler: error: ccnow/default: {answer}: the commands stay queued; fix the "
        "password (`reconciler check --online` says when it is taken), and the daemon or this "
        "command again sends them"
    ]
    assert logged(shipped.stderr, "ccnow.action_retry_later") == []
    [warning] = logged(shipped.stderr, "ccnow.action_credentials_refused")
    assert warning["level"] == "warning" and warning["command_ids"] == [1]


async def test_the_same_command_line_with_the_fixed_password_sends_it(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.password = ROTATED  # CCNow's API password changed; the config's is the old one
    refused = await run_cli("--config", cfg, "ccnow", "ship", A, env=cli_env())
    assert refused.code == 78, refused.stderr
    assert fake_ccnow.actions == []
    # At once, not after its next attempt's time: the credentials were all that was wrong.
    fixed = cli_env(RECONCILER_CCNOW_PASSWORD=ROTATED)
    again = await run_cli("--config", cfg, "ccnow", "ship", A, env=fixed)
    assert again.code == 0, again.stderr
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "ship")]
    assert "(made before with this key)" in again.stdout


async def test_the_api_answers_202_with_the_command_queued_and_credentials_refused(
    tmp_path: Path, fake: FakeCCVWrites, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.password = ROTATED
    async with serve_api(tmp_path, fake, ccnow=fake_ccnow) as api:
        body = {"order_id": A, "action": "ship"}
        status, body, _ = await api.call("POST", "/api/v1/ccnow/actions", body=body)
    assert status == 202, body
    assert (body["state"], body["credentials_refused"]) == ("queued", True)
    assert body["answer"].startswith("credentials refused (")
    assert ROTATED not in json.dumps(body) and CCNOW_PASSWORD not in json.dumps(body)


@contextlib.asynccontextmanager
async def daemon_sender(tmp_path: Path, clock: Clock) -> AsyncIterator[ActionSender]:
    config = load_config(tmp_path / "reconciler.toml")
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        async with aiohttp.ClientSession() as session:
            reconciler = Reconciler(config, store)
            yield ActionSender(store, session, reconciler, config.ccnow, clock=clock, gates=Gates())
    finally:
        await store.close()


async def test_the_daemon_holds_it_with_one_warning_while_the_account_fails(
    tmp_path: Path,
    fake_ccnow: FakeCCNow,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.password = ROTATED
    # The account's own poll fails on the same answer: its health says so (source.failed).
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 75
    clock = Clock(time.time())
    caplog.set_level(logging.DEBUG, logger="reconciler.writes.ccnow_actions")
    async with daemon_sender(tmp_path, clock) as sender:
        taken = await sender.take(build(sender.accounts["default"], "ship", [A]))
        [row] = taken.rows
        assert row.state == "queued"
        posted = len(fake_ccnow.requests)
        for _ in range(5):  # the daemon's ticks, an hour apart
            clock.now += 3600
            await sender.send_due()
        # Not posted again while the account's health fails: the password would be refused.
        assert len(fake_ccnow.requests) == posted
        [c] = await cmds.get(sender.store, [row.id])
        assert c.state == "queued"
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said.count("ccnow.action_credentials_refused") == 1
    assert "ccnow.action_retry_later" not in said
    # CCNow's password set back (or the config's fixed and the daemon started again): the
    # account's next poll answers, and the command goes with the next tick.
    fake_ccnow.password = CCNOW_PASSWORD
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    async with daemon_sender(tmp_path, clock) as sender:
        clock.now += 60
        await sender.send_due()
        [c] = await cmds.get(sender.store, [row.id])
    assert c.state == "succeeded"
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "ship")]
