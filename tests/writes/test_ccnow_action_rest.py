"""An account resting at CCNow's word (a 429 whose Retry-After asks longer than a request's own
retries wait, sources/rest.py) is asked no status read by an action's close either: a ship
whose answer does not say it took is not read back within the rest, by the daemon or by a
command line started after the process that was asked it (README "Retry-After of a read")."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import call_cli, cli_env
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import ccnow, query, tracked

A, B = "396-10-1142", "396-10-1143"


async def test_a_ship_closed_within_a_rest_asks_no_status_read(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    # The pending list is turned away for ten minutes: the account rests; the store keeps it.
    fake_ccnow.script = [Reply(429, "Too Many Requests", headers={"Retry-After": "600"})]
    rested = await call_cli("--config", cfg, "catch-up", "--source", "ccnow")
    assert rested.code == 75, rested.stderr
    [(until,)] = query(tmp_path, "SELECT rest_until FROM sources WHERE source = 'ccnow'")
    assert until is not None
    # The ship's answer says nothing of B: its close would read B back, within the rest.
    fake_ccnow.actions_answer = ["message no_pending_orders"]
    before = len(fake_ccnow.requests)
    result = await ccnow(cfg, "ship", B, "--notes", "On its way")
    posts = [seen.form for seen in fake_ccnow.requests[before:]]
    assert [form.get("x_action_1", "query") for form in posts] == ["ship"], result.stdout
    # Not read, it is queued again, and not posted again before the rest ends either.
    assert result.code == 75, result.stderr
    [(state, next_attempt_at)] = query(tmp_path, "SELECT state, next_attempt_at FROM commands")
    assert state == "queued" and next_attempt_at >= until - 1


async def test_a_rest_a_ship_command_lines_status_read_was_asked_holds_the_next_catch_up(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    """With no daemon running, the ship's command line is the process whose read CCNow turned
    away: it records the rest as a pass would (one `source.resting` line), so the `catch-up`
    after it asks nothing within the rest and exits 75, rather than asking again at once."""
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    # The ship's answer says nothing of B: its close reads B back, and CCNow turns that away.
    fake_ccnow.actions_answer = ["message no_pending_orders"]
    fake_ccnow.reads = [Reply(429, "Too Many Requests", headers={"Retry-After": "600"})]
    before = time.time()
    shipped = await call_cli("--config", cfg, "ccnow", "ship", B, env=cli_env())
    assert shipped.code == 75, shipped.stderr
    forms = [seen.form for seen in fake_ccnow.requests]
    assert [form.get("x_action_1", "query") for form in forms[-2:]] == ["ship", "query"]
    [(until,)] = query(tmp_path, "SELECT rest_until FROM sources WHERE source = 'ccnow'")
    assert until is not None and before + 600 <= until <= time.time() + 600
    assert shipped.stderr.count('"source.resting"') == 1, shipped.stderr
    asked = len(fake_ccnow.requests)
    caught_up = await call_cli("--config", cfg, "catch-up", "--source", "ccnow", env=cli_env())
    assert caught_up.code == 75, caught_up.stderr
    assert len(fake_ccnow.requests) == asked  # not the pending list, not B's query
