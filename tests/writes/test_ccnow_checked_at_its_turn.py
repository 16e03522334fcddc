"""A command queued behind an older one of its order is checked against the snapshot when its
turn comes, as a new one is when recorded ("Checked first"): a discount waiting behind a ship
was posted once the ship was done, its order then `mark_shipped`, while the same discount
recorded a second later was refused without asking CCNow. Each answer is sent by a fake on
127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

from tests.conftest import call_cli, read_events, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import A, ccnow, commands, query

RATE_LIMIT = Reply(429, "slow down", headers={"Retry-After": "600"})
PAST = (
    "its last known status is mark_shipped, past pending; CCNow takes actions on pending "
    "orders only"
)


async def make_due(tmp_path: Path, action: str) -> None:
    # Off the event loop, where a daemon of this process may need it to end its transaction.
    await asyncio.to_thread(_make_due, tmp_path, action)


def _make_due(tmp_path: Path, action: str) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db", timeout=60)) as conn, conn:
        conn.execute(
            "UPDATE commands SET next_attempt_at = ? WHERE action = ?", (time.time() - 1, action)
        )


async def test_a_discount_queued_behind_a_ship_is_refused_at_its_turn_as_when_recorded(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [RATE_LIMIT]  # the ship waits in the queue; the discount behind it
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "ship", A)).code == 75
    held = await ccnow(cfg, "adjust", A, "--amount", "9.00")
    assert held.code == 75, held.stdout + held.stderr
    assert "waits for #1 (ship) of its order" in held.stdout
    await make_due(tmp_path, "ship")
    turn = await ccnow(cfg, "ship", A)
    assert turn.code == 0, turn.stdout + turn.stderr
    # The ship's answer put the order past pending: the discount is not posted.
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "ship")]
    assert not [r for r in fake_ccnow.requests if r.form.get("x_action_1") == "adjust"]
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped"), (A, "refused", PAST)]
    assert "order.action_refused" in turn.stderr
    # Each event carries its order's status before and after it closed: the ship's answer made
    # the order followed; the refusal changed nothing.
    ended = [
        (e["data"]["action"], e["data"]["previous_status"], e["data"]["status"])
        for e in read_events(tmp_path)
        if e["type"] in ("order.action_succeeded", "order.action_refused")
    ]
    assert ended == [("ship", None, "mark_shipped"), ("adjust", "mark_shipped", "mark_shipped")]
    # The same discount recorded now is refused in the same words.
    later = await ccnow(cfg, "adjust", A, "--amount", "9.00", "--key", "another")
    assert later.code == 65, later.stdout + later.stderr
    assert commands(tmp_path)[2] == (A, "refused", PAST)
    asked = len(fake_ccnow.requests)
    # The first one's key answers its refusal, nothing sent.
    again = await ccnow(cfg, "adjust", A, "--amount", "9.00")
    assert again.code == 65 and PAST in again.stdout, again.stdout + again.stderr
    assert len(fake_ccnow.requests) == asked


async def test_a_command_posted_before_is_sent_again_whatever_the_snapshot_says(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # An earlier post (turned away by a proxy's 503) may have been applied: its order's status,
    # read after CCNow's `not pending`, says the ship took. Refused here, it would not be.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.after_applying = [Reply(503, "<html>Backend fetch failed</html>", "text/html")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    cfg.write_text(cfg.read_text().replace("retries = 1", "retries = 0"))
    assert (await ccnow(cfg, "ship", A)).code == 75
    # The snapshot learns that the order shipped (a poll) before the ship's next turn.
    assert (await call_cli("--config", cfg, "track", "ccnow", A)).code == 0
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    assert query(tmp_path, "SELECT state FROM commands") == [("queued",)]
    await make_due(tmp_path, "ship")
    turn = await ccnow(cfg, "ship", A)
    assert turn.code == 0, turn.stdout + turn.stderr
    assert commands(tmp_path) == [
        (A, "succeeded", "mark_shipped (already past pending when CCNow got this command)")
    ]
