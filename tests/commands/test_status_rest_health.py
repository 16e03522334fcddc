"""`status` and `status --json` say one thing of a resting account (README "Retry-After of a
read"): its health follows its events, and `status` shows until when it rests. A rest a pass met
failed the account, and it reads `failing` since that `source.failed`; a rest recorded outside a
pass (a `ccnow` command line's status read) failed nothing: no pass has answered an account whose
first record is that rest, and it reads `unknown` as before, not `ok`, as /healthz's `healthy`
(false: no success yet) has it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from reconciler.json_text import iso_time
from tests.commands.test_status_rest import set_rest, status
from tests.conftest import call_cli, cli_env, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import query

A, B = "396-10-1142", "396-10-1143"


def too_many(seconds: int) -> Reply:
    return Reply(429, "Too Many Requests", headers={"Retry-After": str(seconds)})


def shown(text: str) -> tuple[list[str], list[str]]:
    """The text's ACCOUNTS row and RESTING row of ccnow/default, split in columns."""
    rows = [line.split() for line in text.splitlines() if line.startswith("ccnow/default ")]
    return rows[0], rows[1]


def agree(entry: dict[str, Any], text: str) -> None:
    """The text says what the JSON says: health, failing since, until when it rests."""
    account, resting = shown(text)
    assert account[1:3] == [entry["health"], entry["failing_since"] or "-"], text
    assert resting[:2] == ["ccnow/default", entry["resting_until"]], text


async def test_a_rest_a_pass_met_reads_failing_since_its_source_failed(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [too_many(600)]  # the catch-up's pending list
    assert (await call_cli("--config", cfg, "catch-up", env=cli_env())).code == 75
    [(failed_at, until)] = query(
        tmp_path,
        "SELECT e.time, s.rest_until FROM events e, sources s WHERE e.type = 'source.failed'",
    )
    accounts, text = await status(cfg)
    entry = accounts[("ccnow", "default")]
    assert (entry["health"], entry["failing_since"]) == ("failing", iso_time(failed_at)), entry
    assert entry["resting_until"] == iso_time(until)
    agree(entry, text)


async def test_a_rest_recorded_outside_a_pass_leaves_an_unpolled_account_unknown(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", A, B)).code == 0
    accounts, _ = await status(cfg)
    assert accounts[("ccnow", "default")]["health"] == "unknown"  # no pass yet
    # The ship's answer says nothing of B: its close reads B back, and CCNow turns that away.
    fake_ccnow.actions_answer = ["message no_pending_orders"]
    fake_ccnow.reads = [too_many(600)]
    shipped = await call_cli("--config", cfg, "ccnow", "ship", B, env=cli_env())
    assert shipped.code == 75, shipped.stderr
    [(until, last_success)] = query(tmp_path, "SELECT rest_until, last_success FROM sources")
    assert until is not None and last_success is None

    accounts, text = await status(cfg)
    entry = accounts[("ccnow", "default")]
    assert (entry["health"], entry["failing_since"]) == ("unknown", None), entry
    assert entry["resting_until"] == iso_time(until)
    agree(entry, text)
    assert query(tmp_path, "SELECT count(*) FROM events WHERE type = 'source.failed'") == [(0,)]

    # A pass that answers (the rest over) makes it `ok`, and ends the rest's record.
    set_rest(tmp_path, time.time() - 1)
    assert (await call_cli("--config", cfg, "catch-up", env=cli_env())).code == 0
    accounts, text = await status(cfg)
    entry = accounts[("ccnow", "default")]
    assert (entry["health"], entry["resting_until"]) == ("ok", None), entry
