"""`reconciler status [--json]` says until when an account rests at its provider's word (a 429 or
503 whose Retry-After asks longer than a request's retries wait): `resting_until` and a line in
the text, while the rest is still ahead; an ended or void one shows none (README "Retry-After
of a read")."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from reconciler.json_text import iso_time
from reconciler.schedule import MAX_REST_S
from tests.conftest import call_cli, cli_env, write_config
from tests.fake_providers import FakeCCNow, FakeCCV, Reply


def set_rest(tmp_path: Path, until: float) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute("UPDATE sources SET rest_until = ? WHERE source = 'ccnow'", (until,))


async def status(cfg: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], str]:
    """Return `status --json`'s accounts by (source, account), and `status`'s text."""
    as_json = await call_cli("--config", cfg, "status", "--json", env=cli_env())
    assert as_json.code == 0, as_json.stderr
    text = await call_cli("--config", cfg, "status", env=cli_env())
    assert text.code == 0, text.stderr
    accounts = json.loads(as_json.stdout)["accounts"]
    return {(a["source"], a["account"]): a for a in accounts}, text.stdout


async def test_status_says_until_when_an_account_rests(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    # CCNow turns the catch-up's pending list away for ten minutes; CCV answers.
    fake_ccnow.script = [Reply(429, "Too Many Requests", headers={"Retry-After": "600"})]
    caught = await call_cli("--config", cfg, "catch-up", env=cli_env())
    assert caught.code == 75, caught.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        [(until,)] = conn.execute("SELECT rest_until FROM sources WHERE source = 'ccnow'")
    assert until is not None and until > time.time()

    accounts, text = await status(cfg)
    ccnow, ccv = accounts[("ccnow", "default")], accounts[("ccv", "default")]
    assert ccnow["resting_until"] == iso_time(until)
    assert ccnow["health"] == "failing"  # its meaning kept
    assert ccv["resting_until"] is None
    # Its own table, below the accounts', only while an account rests.
    resting = text.split("\n\n")[1].splitlines()
    assert resting[0].split() == ["RESTING", "UNTIL"], text
    assert resting[1].split()[:2] == ["ccnow/default", iso_time(until)], text
    assert "no read" in resting[1] and len(resting) == 2

    # An ended rest, and one recorded further ahead than the bound (void): none shown.
    for ended in (time.time() - 1, time.time() + MAX_REST_S + 600):
        set_rest(tmp_path, ended)
        accounts, text = await status(cfg)
        assert accounts[("ccnow", "default")]["resting_until"] is None
        assert iso_time(ended) not in text and "RESTING" not in text
