"""Orders of an account the config no longer names (removed or renamed): `check`, `run`,
`catch-up` and `status` say so, and `untrack --account` still reaches them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, call_cli, daemon_here, poll_until
from tests.fake_providers import CCNOW_CLIENT_ID, CCNOW_PASSWORD, FakeCCNow

EU = ["183-49-0180", "540-69-3367"]
WARNING = "orders.account_not_configured"


def config(tmp_path: Path, file: str, **accounts: FakeCCNow) -> Path:
    """A config with one [[ccnow]] table per account, each asking its own fake shop."""
    tables = "".join(
        f'[[ccnow]]\nname = "{name}"\nurl = "{fake.url}"\nclient_id = "{CCNOW_CLIENT_ID}"\n'
        f'password = "{CCNOW_PASSWORD}"\ntimeout = "2s"\nretries = 1\n'
        'retry_backoff = "10ms"\n\n'
        for name, fake in accounts.items()
    )
    path = tmp_path / file
    path.write_text(f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n{tables}')
    path.chmod(0o600)
    return path


def warnings(result: Result) -> list[dict[str, Any]]:
    return [line for line in result.log_lines() if line["message"] == WARNING]


def assert_warned_about_eu(result: Result, open_orders: int = 2) -> None:
    (line,) = warnings(result)
    assert line["level"] == "warning"
    assert (line["source"], line["account"], line["open_orders"]) == ("ccnow", "eu", open_orders)
    assert "--account eu" in line["hint"]


@pytest.fixture
async def us() -> AsyncIterator[FakeCCNow]:
    """The shop of the account `us`, with no orders."""
    async with FakeCCNow() as fake:
        yield fake


async def eu_then_renamed(tmp_path: Path, us: FakeCCNow, eu: FakeCCNow) -> Path:
    """Orders tracked and checked under `eu`, then `eu` renamed to `asia` in the config."""
    eu.orders = dict.fromkeys(EU, "pending")
    before = config(tmp_path, "before.toml", us=us, eu=eu)
    tracked = await call_cli("--config", before, "track", "ccnow", *EU, "--account", "eu")
    assert tracked.code == 0
    caught = await call_cli("--config", before, "catch-up")
    assert caught.code == 0, caught.stderr
    assert warnings(caught) == []
    eu.pending_statuses = set()  # else the pending list finds them again, as asia's
    return config(tmp_path, "reconciler.toml", us=us, asia=eu)


async def test_check_catch_up_and_status_say_whose_orders_nothing_checks(
    tmp_path: Path, us: FakeCCNow, fake_ccnow: FakeCCNow
) -> None:
    cfg = await eu_then_renamed(tmp_path, us, fake_ccnow)

    checked = await call_cli("--config", cfg, "check")
    assert checked.code == 0, checked.stderr  # a warning: the config itself is valid
    assert_warned_about_eu(checked)

    # Every configured account answered: still 0, as the contract has it, but said.
    caught = await call_cli("--config", cfg, "catch-up", "--source", "ccnow")
    assert caught.code == 0, caught.stderr
    assert_warned_about_eu(caught)
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccv")).code == 2

    result = await call_cli("--config", cfg, "status", "--json")
    assert result.code == 0, result.stderr
    assert_warned_about_eu(result)
    accounts = {f"{a['source']}/{a['account']}": a for a in json.loads(result.stdout)["accounts"]}
    assert list(accounts) == ["ccnow/us", "ccnow/asia", "ccnow/eu"]
    eu = accounts["ccnow/eu"]
    assert (eu["health"], eu["configured"], eu["followed"]) == ("not_configured", False, 2)
    assert eu["orders"] == [{"status": "pending", "count": 2}]
    assert accounts["ccnow/us"]["configured"] is True

    text = await call_cli("--config", cfg, "status")
    assert text.code == 0
    assert_warned_about_eu(text)
    rows = [line.split() for line in text.stdout.splitlines()]
    assert next(r for r in rows if r[0] == "ccnow/eu")[:3] == ["ccnow/eu", "not", "configured"]
    assert ["ccnow/eu", "pending", "2"] in rows  # its orders, by status


async def test_the_daemon_says_so_when_it_starts(
    tmp_path: Path, us: FakeCCNow, fake_ccnow: FakeCCNow
) -> None:
    cfg = await eu_then_renamed(tmp_path, us, fake_ccnow)
    log = tmp_path / "daemon.log"
    async with daemon_here(cfg):
        await poll_until(lambda: "daemon.ready" in log.read_text(), 60, "the daemon is ready")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (line,) = [x for x in lines if x["message"] == WARNING]
    assert (line["account"], line["open_orders"], line["followed"]) == ("eu", 2, 2)


async def test_an_account_whose_orders_all_ended_is_shown_but_not_warned_about(
    tmp_path: Path, us: FakeCCNow, fake_ccnow: FakeCCNow
) -> None:
    cfg = await eu_then_renamed(tmp_path, us, fake_ccnow)
    fake_ccnow.orders = dict.fromkeys(EU, "canceled")
    caught = await call_cli("--config", tmp_path / "before.toml", "catch-up")
    assert caught.code == 0, caught.stderr

    result = await call_cli("--config", cfg, "status", "--json")
    assert warnings(result) == []
    (eu,) = [a for a in json.loads(result.stdout)["accounts"] if a["account"] == "eu"]
    assert (eu["health"], eu["followed"]) == ("not_configured", 2)


async def test_untrack_reaches_an_account_no_longer_configured(
    tmp_path: Path, us: FakeCCNow, fake_ccnow: FakeCCNow
) -> None:
    cfg = await eu_then_renamed(tmp_path, us, fake_ccnow)

    ambiguous = await call_cli("--config", cfg, "untrack", "ccnow", EU[0])
    assert ambiguous.code == 2
    assert "several ccnow accounts (us, asia; not configured: eu): give --account" in (
        ambiguous.stderr
    )
    typo = await call_cli("--config", cfg, "untrack", "ccnow", EU[0], "--account", "ue")
    assert typo.code == 2
    assert "no ccnow account named 'ue' (us, asia; not configured: eu)" in typo.stderr

    # No credentials needed: untracking asks no provider.
    requests = len(fake_ccnow.requests)
    untracked = await call_cli("--config", cfg, "untrack", "ccnow", *EU, "--account", "eu")
    assert untracked.code == 0, untracked.stderr
    assert len(fake_ccnow.requests) == requests
    with closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
    checked = await call_cli("--config", cfg, "check")
    assert checked.code == 0 and warnings(checked) == []
