"""`reconciler check --online` and an account's rest at its provider's word (a 429 or 503 whose
Retry-After asks longer than a request's retries wait; README "Retry-After of a read" and the
`check` row): an account the store says rests is not asked (75, until when it rests), and a rest
a probe is asked is recorded in the store, as a `ccnow` command line's status read records one
(poller/rests.py), so that the `catch-up` after it asks nothing within it."""

from __future__ import annotations

import time
from pathlib import Path

from reconciler.json_text import iso_time
from tests.conftest import call_cli, cli_env, run_cli, write_config
from tests.fake_providers import FakeCCNow, FakeCCV, Reply
from tests.writes.test_ccnow_actions import query

A = "396-10-1142"


def too_many(seconds: int) -> Reply:
    return Reply(429, "Too Many Requests", headers={"Retry-After": str(seconds)})


def rest_until(tmp_path: Path) -> float | None:
    [(until,)] = query(tmp_path, "SELECT rest_until FROM sources WHERE source = 'ccnow'")
    return until if until is None else float(until)


async def test_check_online_asks_nothing_of_an_account_that_rests(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    fake_ccnow.script = [too_many(600)]  # the catch-up's pending list: the account rests
    assert (await call_cli("--config", cfg, "catch-up")).code == 75
    until = rest_until(tmp_path)
    assert until is not None
    asked = len(fake_ccnow.requests)

    checked = await run_cli("--config", cfg, "check", "--online", env=cli_env())
    assert checked.code == 75, checked.stderr
    assert len(fake_ccnow.requests) == asked  # not asked within its rest
    assert f"ccnow/default: resting until {iso_time(until)}" in checked.stderr, checked.stderr
    assert "ccv/default: ok" in checked.stdout and "config ok" in checked.stdout


async def test_check_online_records_the_rest_a_probe_is_asked(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", A)).code == 0
    fake_ccnow.script = [too_many(600)]  # the probe's pending list
    before = time.time()
    checked = await run_cli("--config", cfg, "check", "--online", env=cli_env())
    assert checked.code == 75, checked.stderr
    assert len(fake_ccnow.requests) == 1  # not tried again within the check
    until = rest_until(tmp_path)
    assert until is not None and before + 600 <= until <= time.time() + 600, checked.stderr
    assert f"unavailable (http 429: resting until {iso_time(until)})" in checked.stderr
    assert checked.stderr.count('"source.resting"') == 1, checked.stderr
    # No pass failed the account: its health is as its events left it.
    assert query(tmp_path, "SELECT count(*) FROM events WHERE type = 'source.failed'") == [(0,)]

    caught_up = await run_cli("--config", cfg, "catch-up", env=cli_env())
    assert caught_up.code == 75, caught_up.stderr
    assert len(fake_ccnow.requests) == 1  # neither the pending list nor A's query


async def test_check_online_makes_no_store_to_record_a_rest(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [too_many(600)]
    checked = await run_cli("--config", cfg, "check", "--online", env=cli_env())
    assert checked.code == 75, checked.stderr
    assert "unavailable (http 429: resting until" in checked.stderr
    assert not (tmp_path / "reconciler.db").exists()
