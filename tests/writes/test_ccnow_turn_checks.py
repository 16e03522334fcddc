"""A queued command checked against the snapshot at its turn: a discount or tracking upload an
earlier post was turned away with (nothing ran) is refused as one never posted is, while a ship
posted before is sent again; the check's claim and close are one commit, of a command as it was
loaded; the dry run leaves out what the check refuses. And a ship that a proxy's 503 hid,
refused as not pending by the retry, stays queued when its order's status cannot be read. Each
answer is sent by a fake on 127.0.0.1; the store is a real SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.requeue import requeue
from reconciler.writes.ccnow_taken import Tally
from reconciler.writes.ccnow_turn import refuse_past_pending
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import ARGS, WORD, A, ccnow, commands, query, tracked
from tests.writes.test_ccnow_checked_at_its_turn import PAST, RATE_LIMIT, make_due
from tests.writes.test_ccnow_retry_finds_taken import VARNISH


@pytest.mark.parametrize("action", ["adjust", "add-tracking"])
async def test_one_turned_away_before_is_refused_at_its_turn_once_its_order_shipped(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [RATE_LIMIT]  # turned away: nothing ran, one attempt counted
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, action, A, *ARGS[action])).code == 75
    assert query(tmp_path, "SELECT state, attempts FROM commands") == [("queued", 1)]
    fake_ccnow.orders = {A: "mark_shipped"}  # shipped in CCNow's backroom; a poll sees it
    assert (await call_cli("--config", cfg, "track", "ccnow", A)).code == 0
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    asked = len(fake_ccnow.requests)
    await make_due(tmp_path, WORD[action])
    turn = await ccnow(cfg, action, A, *ARGS[action])
    assert turn.code == 65, turn.stdout + turn.stderr
    assert commands(tmp_path) == [(A, "refused", PAST)]
    assert len(fake_ccnow.requests) == asked  # not posted
    assert fake_ccnow.actions == []


async def store_with(tmp_path: Path, fake: FakeCCNow, action: cmds.Action) -> Any:
    """A store whose snapshot has order A marked shipped, and a command of it never posted."""
    fake.orders = {A: "mark_shipped"}
    await tracked(tmp_path, fake, A)
    store = await Store.open(tmp_path / "reconciler.db")
    new = cmds.NewCommand("default", A, action, "k", amount="2.00")
    [(command, _)] = await cmds.record(store, [new], time.time())
    return store, command


async def test_a_death_while_refusing_at_its_turn_leaves_the_command_queued_as_it_was(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    store, command = await store_with(tmp_path, fake_ccnow, "adjust")
    try:
        # The process dies as the refusal's event is stored: the claim must not outlive it
        # (a command left `sending` is taken, at the next start, for one a post carried).
        async def dies(*_args: object, **_kwargs: object) -> int:
            raise RuntimeError("killed")

        store.events.add = dies
        with pytest.raises(RuntimeError, match="killed"):
            await refuse_past_pending(store, [command], Tally(), now=time.time())
    finally:
        await store.close()
    rows = query(tmp_path, "SELECT state, attempts, answer FROM commands")
    assert rows == [("queued", 0, None)]
    assert query(tmp_path, "SELECT count(*) FROM events WHERE type LIKE 'order.action%'") == [(0,)]


async def test_a_command_posted_since_it_was_loaded_is_not_refused_at_its_turn(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    store, stale = await store_with(tmp_path, fake_ccnow, "ship")
    try:
        # Another sender of the process posted it meanwhile (a proxy's 503 hid the answer): it
        # is queued again, and its order's status, read after CCNow's answer, decides it.
        assert await cmds.mark_sending(store, [stale.id]) == [stale.id]
        now = time.time()
        await requeue(store, [stale.id], next_attempt_at=now, why="http 503", now=now)
        tally = Tally()
        await refuse_past_pending(store, [stale], tally, now=time.time())
        assert tally.refused == 0
    finally:
        await store.close()
    assert query(tmp_path, "SELECT state, attempts, answer FROM commands") == [
        ("queued", 1, "http 503")
    ]


async def test_the_dry_run_leaves_out_a_queued_command_refused_at_its_turn(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [RATE_LIMIT]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "ship", A)).code == 75
    assert (await ccnow(cfg, "adjust", A, "--amount", "9.00")).code == 75  # behind the ship
    fake_ccnow.orders = {A: "mark_shipped"}
    assert (await call_cli("--config", cfg, "track", "ccnow", A)).code == 0
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    # The ship is settled (by a person: `resolve`), the discount, never posted, due.
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute("UPDATE commands SET state = 'sent', closed_at = 1 WHERE action = 'ship'")
    await make_due(tmp_path, "adjust")
    asked = len(fake_ccnow.requests)
    dry = await ccnow(cfg, "adjust", A, "--amount", "9.00", "--dry-run")
    assert dry.code == 65, dry.stdout + dry.stderr
    assert "x_action_1" not in dry.stdout
    assert f"{A} adjust left out: refused without asking CCNow: {PAST}" in dry.stderr
    assert len(fake_ccnow.requests) == asked
    real = await ccnow(cfg, "adjust", A, "--amount", "9.00")
    assert real.code == 65, real.stdout + real.stderr
    assert commands(tmp_path)[1] == (A, "refused", PAST)


async def test_a_ship_a_503_hid_stays_queued_when_its_order_cannot_be_read(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # CCNow applied the ship, a proxy answered 503; the retry is answered `not pending`; the
    # order's status read is answered 500: nothing says the ship did not take.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.after_applying = [Reply(503, VARNISH, content_type="text/html")]
    answer = fake_ccnow._answer

    async def status_read_fails(request: Any, seen: Any, build: Any) -> Any:
        if seen.form.get("x_action_1", "query") == "query":
            return await answer(request, seen, lambda: Reply(500, "Internal Server Error"))
        return await answer(request, seen, build)

    fake_ccnow._answer = status_read_fails  # type: ignore[method-assign]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "ship", A)
    assert result.code == 75, result.stdout + result.stderr
    assert [a for _, a, _ in fake_ccnow.actions] == ["ship"]
    [(state, answer_kept)] = query(tmp_path, "SELECT state, answer FROM commands")
    assert state == "queued"
    assert "order not pending" in answer_kept
    assert "its order's status could not be read" in answer_kept
