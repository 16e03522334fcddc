"""`reconciler check --online` and an account's rest at its provider's word (a 429 or 503 whose
Retry-After asks longer than a request's retries wait; README "Retry-After of a read" and the
`check` row): an account the store says rests is not asked (75, until when it rests), and a
probe turned away with such a rest says so at once (75, not tried again), but `check` writes
nothing to the store: run as root, a write could leave files the daemon's user cannot open, or
upgrade an older store."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from reconciler.json_text import iso_time
from tests.conftest import call_cli, cli_env, write_config
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

    checked = await call_cli("--config", cfg, "check", "--online", env=cli_env())
    assert checked.code == 75, checked.stderr
    assert len(fake_ccnow.requests) == asked  # not asked within its rest
    assert f"ccnow/default: resting until {iso_time(until)}" in checked.stderr, checked.stderr
    assert "ccv/default: ok" in checked.stdout and "config ok" in checked.stdout


async def test_check_online_says_the_rest_a_probe_is_asked_and_writes_no_store(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", A)).code == 0
    stored = {f.name: f.read_bytes() for f in tmp_path.iterdir()}  # the database among them
    modified = (tmp_path / "reconciler.db").stat().st_mtime_ns
    fake_ccnow.script = [too_many(600)]  # the probe's pending list
    before = time.time()
    checked = await call_cli("--config", cfg, "check", "--online", env=cli_env())
    assert checked.code == 75, checked.stderr
    assert len(fake_ccnow.requests) == 1  # not tried again within the check
    said = "ccnow/default: unavailable (http 429: resting until "
    assert said in checked.stderr, checked.stderr
    when = checked.stderr.split(said, 1)[1].split(")", 1)[0]
    assert before + 599 <= datetime.fromisoformat(when).timestamp() <= time.time() + 601
    # The store is as `track` left it: no rest recorded, no file of it changed, and no frame in
    # a WAL file (a read-only connection may leave an empty one and its index, owned as the
    # database is even when made by root).
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir() if f.name in stored} == stored
    assert (tmp_path / "reconciler.db").stat().st_mtime_ns == modified
    wal = tmp_path / "reconciler.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert query(tmp_path, "SELECT * FROM sources WHERE rest_until IS NOT NULL") == []


async def test_check_online_makes_no_store_for_a_rest(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [too_many(600)]
    checked = await call_cli("--config", cfg, "check", "--online", env=cli_env())
    assert checked.code == 75, checked.stderr
    assert "unavailable (http 429: resting until" in checked.stderr
    assert not (tmp_path / "reconciler.db").exists()
