"""A discount held behind an uncertain one of its order is refused without a post, claimed and
closed in one commit, of the command as it was loaded: a death at any point leaves it queued
as it was or refused with its event, never `sending` (the next start would take it for one a
post carried: `uncertain`, a person asked to settle a discount CCNow never saw). Against a
real SQLite file, read back through a connection of its own."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.events import Event
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_taken import Tally
from reconciler.writes.ccnow_turn import refuse_second

A = "396-10-1142"


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


async def behind_an_uncertain_discount(db: Path) -> tuple[Store, cmds.Command, cmds.Command]:
    """A store holding an uncertain discount of order A (#1) and a second one queued behind it
    (#2: recorded beside it by two requests at once, or an older release)."""
    store = await Store.open(db)
    first = cmds.NewCommand("default", A, "adjust", "k1", amount="5.00")
    second = cmds.NewCommand("default", A, "adjust", "k2", amount="5.00")
    [(one, _), (two, _)] = await cmds.record(store, [first, second], time.time())

    async def no_events() -> list[Event]:
        return []

    await cmds.close(store, [(one.id, "uncertain", "http_524")], no_events, time.time())
    return store, one, two


async def refuse(store: Store, two: cmds.Command, tally: Tally) -> bool:
    ahead = await cmds.ahead(store, [two])
    assert ahead[two.id].state == "uncertain"
    return await refuse_second(store, [two], ahead, tally, accounts=["default"], now=time.time())


async def test_a_discount_behind_an_uncertain_one_is_refused_never_claimed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "reconciler.db"
    store, one, two = await behind_an_uncertain_discount(db)
    tally = Tally()
    try:
        assert await refuse(store, two, tally)
    finally:
        await store.close()
    assert tally.refused == 1
    # Never posted: no attempt counted, as a command refused at its turn has none.
    [(state, attempts, answer)] = rows(
        db, f"SELECT state, attempts, answer FROM commands WHERE id = {two.id}"
    )
    assert (state, attempts) == ("refused", 0)
    assert answer.startswith(f"an earlier discount of this order (#{one.id}) is uncertain")
    events = rows(db, "SELECT type FROM events WHERE type LIKE 'order.action%'")
    assert events == [("order.action_refused",)]


async def test_a_death_while_refusing_a_second_discount_leaves_it_queued_as_it_was(
    tmp_path: Path,
) -> None:
    db = tmp_path / "reconciler.db"
    store, _one, two = await behind_an_uncertain_discount(db)
    try:
        # The process dies as the refusal's event is stored, where the claim was committed
        # and the close not yet: nothing of the refusal may outlive it.
        async def dies(*_args: object, **_kwargs: object) -> int:
            raise RuntimeError("killed")

        store.events.add = dies  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="killed"):
            await refuse(store, two, Tally())
    finally:
        await store.close()
    got = rows(db, f"SELECT state, attempts, answer, closed_at FROM commands WHERE id = {two.id}")
    assert got == [("queued", 0, None, None)]
    assert rows(db, "SELECT count(*) FROM events WHERE type LIKE 'order.action%'") == [(0,)]


async def test_a_second_discount_another_sender_claimed_since_it_was_loaded_is_left_to_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "reconciler.db"
    store, _one, two = await behind_an_uncertain_discount(db)
    tally = Tally()
    try:
        # Another sender of the process (the daemon's tick, a request) took it meanwhile: it
        # refuses it itself, with the one event.
        assert await cmds.mark_sending(store, [two.id]) == [two.id]
        await refuse(store, two, tally)
    finally:
        await store.close()
    assert tally.refused == 0
    assert rows(db, f"SELECT state, attempts FROM commands WHERE id = {two.id}") == [("sending", 1)]
    assert rows(db, "SELECT count(*) FROM events WHERE type LIKE 'order.action%'") == [(0,)]
