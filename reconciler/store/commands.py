"""The `commands` table: CCNow order actions, recorded before they are sent, closed after.

A command is `queued` from its record until it is sent; `sending` while a post is in flight;
then `succeeded` or `refused` by CCNow's answer line for its order, or `queued` again (with a
later `next_attempt_at`) when the answer as a whole failed or had no line that settles its
order. An `adjust` whose answer was lost or did not settle it (or that a stopped process left
`sending`) becomes `uncertain`, never re-sent, until a person says `sent` or `not_sent` (with
an `order.action_resolved`). One whose withdrawal was asked while it was `sending` is closed
withdrawn where it would be queued again (store/requeue.py, store/withdraw.py).
One command per (account, idempotency key), whatever its state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from ..events import Event, action_event
from ..model import OrderKey
from .db import Store
from .sql import CHUNK, marks, values
from .unsettled import COMMANDS_OPEN as _OPEN

State = Literal["queued", "sending", "succeeded", "refused", "uncertain", "sent", "not_sent"]
Unsettled = Literal["queued", "sending", "uncertain"]  # the states of commands_open's rows
# CCNow's own words for the actions (`x_action_N`)
Action = Literal["ship", "cancel", "track", "adjust"]
RETRY_MAX_S = 3600.0  # the longest a queued command waits (a doubling, a Retry-After)

_COLUMNS = (
    "id, account, order_id, action, idempotency_key, notes, amount, trackname, tracknumber, "
    "state, attempts, next_attempt_at, answer, created_at, closed_at, unsettled_since, "
    "maybe_reached_at, held_since, withdraw_asked, turned_away, hidden_at"
)
_UNSENT = f"{_OPEN} AND state IN ('queued', 'sending')"  # no answer has settled them yet


@dataclass(frozen=True, slots=True)
class NewCommand:
    """A command as asked for, before it has a row."""

    account: str
    order_id: str  # hyphenated
    action: Action
    key: str
    notes: str | None = None
    amount: str | None = None  # USD, two decimals
    trackname: str | None = None
    tracknumber: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """One row of `commands`; times are epoch seconds."""

    id: int
    account: str
    order_id: str
    action: Action
    key: str
    notes: str | None
    amount: str | None
    trackname: str | None
    tracknumber: str | None
    state: State
    attempts: int
    next_attempt_at: float
    answer: str | None
    created_at: float
    closed_at: float | None
    # The first of the answers in a row that did not settle its order (no line for it, a post
    # refused in words naming no field of it); None: the last answer was of another kind.
    unsettled_since: float | None
    # The first post that may have reached CCNow with the order: its answer lost or not
    # settling the order, or its process stopped while it was out. None: no post did.
    maybe_reached_at: float | None
    # The first of the answers in a row that settled nothing about it, as `unsettled_since`,
    # but a line saying CCNow is down does not start it again. None: not such an answer.
    held_since: float | None
    # How its withdrawal was asked while its post was out (store/withdraw.py's `by hand`, `by
    # untrack`); None: it was not.
    withdraw_asked: str | None = None
    # The status of the last answer that turned a post of it away before CCNow acted on it
    # (`HTTP 429`); None: none did. A post that then never connected keeps it: it was sent.
    # A later post that may have reached CCNow lets go of it (`maybe_reached_at`, `hidden_at`).
    turned_away: str | None = None
    # The first post whose answer may hide that CCNow ran it (a proxy's 503 without CCNow's
    # words). A ship or cancel queued again keeps no `maybe_reached_at` for it (its order's
    # status, read after CCNow's `not pending`, tells), but one withdrawn is never read again:
    # its withdrawal says such a post may have reached CCNow (store/withdraw.py).
    hidden_at: float | None = None


def _row(r: Sequence[object]) -> Command:
    return Command(*r)  # type: ignore[arg-type]


async def _made(
    store: Store, c: NewCommand, insert: str, tail: tuple[object, ...]
) -> tuple[Command, bool]:
    """Insert a command unless its key made one (`insert` binds its fields, then `tail`);
    return its row and whether it is new."""
    before = store.conn.total_changes
    await store.conn.execute(
        insert, (c.account, c.order_id, c.action, c.key, c.notes, c.amount, c.trackname, *tail)
    )
    rows = await store.conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM commands WHERE account = ? AND idempotency_key = ?",
        (c.account, c.key),
    )
    return _row(next(iter(rows))), store.conn.total_changes > before


_QUEUED = (
    "INSERT INTO commands (account, order_id, action, idempotency_key, notes, amount, "
    "trackname, tracknumber, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?) "
    "ON CONFLICT (account, idempotency_key) DO NOTHING"
)


async def record(store: Store, new: Sequence[NewCommand], now: float) -> list[tuple[Command, bool]]:
    """Commit the commands in one transaction; return each one's row and whether it is new
    (a key given before returns the command it made then, which is not made again)."""
    async with store.transaction():
        return [await _made(store, c, _QUEUED, (c.tracknumber, now)) for c in new]


async def record_refused(
    store: Store, refused: Sequence[tuple[NewCommand, str]], now: float
) -> list[tuple[Command, bool]]:
    """Commit commands refused without asking CCNow, closed `refused` with why, each new one
    with its `order.action_refused`, in one transaction; return each one's row and whether it
    is new (a key given before returns the command it made then, as `record` does)."""
    out: list[tuple[Command, bool]] = []
    async with store.transaction():
        for c, why in refused:
            row, created = await _made(
                store,
                c,
                "INSERT INTO commands (account, order_id, action, idempotency_key, notes, amount, "
                "trackname, tracknumber, state, answer, created_at, closed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'refused', ?, ?, ?) "
                "ON CONFLICT (account, idempotency_key) DO NOTHING",
                (c.tracknumber, why, now, now),
            )
            out.append((row, created))
        orders = await store.orders.load(OrderKey("ccnow", r.account, r.order_id) for r, _ in out)
        await store.events.add(
            [
                action_event(
                    store.store_id,
                    row.id,
                    "refused",
                    account=row.account,
                    order_id=row.order_id,
                    action=row.action,
                    answer=row.answer,
                    time=now,
                    # Refused without asking CCNow: its order is as it was.
                    before=(order := orders.get(OrderKey("ccnow", row.account, row.order_id))),
                    after=order,
                )
                for row, created in out
                if created
            ]
        )
    return out


async def get(store: Store, ids: Sequence[int]) -> list[Command]:
    """Return the commands with these ids, in id order."""
    if not ids:
        return []
    rows = await store.conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM commands WHERE id IN ({marks(len(ids))}) ORDER BY id",
        tuple(ids),
    )
    return [_row(r) for r in rows]


def is_due(c: Command, now: float) -> bool:
    """Whether a command's next attempt is due: also one more than RETRY_MAX_S ahead, set
    before the wall clock was put back (waiting for it would add the step)."""
    return not now < c.next_attempt_at <= now + RETRY_MAX_S


async def due(store: Store, now: float, limit: int = 1000) -> list[Command]:
    """Return queued commands whose next attempt is due (`is_due`), oldest first."""
    rows = await store.conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM commands WHERE {_OPEN} AND state = 'queued' "
        "AND (next_attempt_at <= ? OR next_attempt_at > ?) ORDER BY id LIMIT ?",
        (now, now + RETRY_MAX_S, limit),
    )
    return [_row(r) for r in rows]


async def open_through(store: Store, through: int) -> list[Command]:
    """Return the queued and sending commands up to id `through`, oldest first."""
    rows = await store.conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM commands WHERE {_UNSENT} AND id <= ? ORDER BY id", (through,)
    )
    return [_row(r) for r in rows]


async def in_state(store: Store, state: Unsettled) -> list[Command]:
    """Return the commands in one unsettled state, oldest first."""
    rows = await store.conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM commands WHERE {_OPEN} AND state = ? ORDER BY id", (state,)
    )
    return [_row(r) for r in rows]


async def of_order(
    store: Store, account: str, order_id: str, states: Sequence[Unsettled]
) -> list[Command]:
    """Return one order's commands in these unsettled states, oldest first."""
    rows = await store.conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM commands WHERE {_OPEN} AND account = ? AND order_id = ? "
        f"AND state IN ({marks(len(states))}) ORDER BY id",
        (account, order_id, *states),
    )
    return [_row(r) for r in rows]


async def ahead(store: Store, commands: Sequence[Command]) -> dict[int, Command]:
    """Return, per command that may not go yet, the older command of its order ahead of it:
    the oldest queued or sending one (one order's commands go to CCNow in the order they were
    made: an adjust queued before a ship, sent after it, would be refused as not pending), else
    for an adjust an uncertain adjust (CCNow may have applied that one: a second would
    discount twice). A command not in it goes now."""
    lines = await in_line(store, commands)
    return {c.id: line.held for c, line in zip(commands, lines, strict=True) if line.held}


class InLine(NamedTuple):
    """What comes before one command in its order: `held`, the older command it waits for
    (None: it goes); `first`, the older ones a run sends before it."""

    held: Command | None
    first: list[Command]


async def in_line(
    store: Store, commands: Sequence[Command | NewCommand], *, due_by: float | None = None
) -> list[InLine]:
    """Per command (a new one comes after every recorded one), what comes before it, by
    `ahead`'s rule, one query per CHUNK orders; with `due_by`, as a run that sends these and
    the queued commands due then (`take`): such an older one goes first, not holding it back."""
    orders = sorted({c.order_id for c in commands})
    open_: dict[tuple[str, str], list[Command]] = {}
    for i in range(0, len(orders), CHUNK):
        part = orders[i : i + CHUNK]
        rows = await store.conn.execute_fetchall(
            f"SELECT {_COLUMNS} FROM commands WHERE {_OPEN} "
            f"AND order_id IN ({marks(len(part))}) ORDER BY id",
            tuple(part),
        )
        for r in rows:
            o = _row(r)
            open_.setdefault((o.account, o.order_id), []).append(o)
    sent = {c.id for c in commands if isinstance(c, Command)}
    out: list[InLine] = []
    for c in commands:
        mine = c.id if isinstance(c, Command) else None
        older = [o for o in open_.get((c.account, c.order_id), []) if mine is None or o.id < mine]
        first: list[Command] = []
        held = None
        for o in (o for o in older if o.state != "uncertain"):
            goes = due_by is not None and (o.id in sent or o.next_attempt_at <= due_by)
            if o.state != "queued" or not goes:
                held = o
                break
            first.append(o)
        if held is None and c.action == "adjust":
            held = next((o for o in older if o.action == "adjust" and o.state == "uncertain"), None)
        out.append(InLine(held, first))
    return out


async def uncertain_accounts(store: Store, order_id: str) -> list[str]:
    """Return the accounts holding an uncertain command of an order, by name."""
    rows = await store.conn.execute_fetchall(
        f"SELECT DISTINCT account FROM commands WHERE {_OPEN} AND state = 'uncertain' "
        "AND order_id = ? ORDER BY account",
        (order_id,),
    )
    return [str(r[0]) for r in rows]


async def mark_sending(store: Store, ids: Sequence[int]) -> list[int]:
    """Commit that a post with these commands is about to leave (counted as an attempt);
    return the ids claimed. One still queued is claimed once: two senders in one process (the
    daemon's tick and an API request) never both post it. A claim counts in the history mark
    (store/history.py): a database that lost it has gone back, and its `queued` command may
    have been sent."""
    claimed = []
    async with store.transaction():
        for i in ids:
            before = store.conn.total_changes
            await store.conn.execute(
                "UPDATE commands SET state = 'sending', attempts = attempts + 1 "
                "WHERE id = ? AND state = 'queued'",
                (i,),
            )
            if store.conn.total_changes > before:
                claimed.append(i)
        if claimed:
            await store.events.skip_seq()
    return claimed


async def note_maybe_reached(store: Store, through: int, at: float) -> None:
    """Note inside the caller's transaction that the queued and sending commands up to id
    `through`, but the adjusts, may have reached CCNow at `at` (the first such moment kept)."""
    await store.conn.execute(
        "UPDATE commands SET maybe_reached_at = coalesce(maybe_reached_at, ?) "
        f"WHERE {_UNSENT} AND action != 'adjust' AND id <= ?",
        (at, through),
    )


async def close_within(
    store: Store, closes: Sequence[tuple[int, State, str | None]], now: float
) -> None:
    """Close commands (id, state, answer) inside the caller's transaction; only an open
    command closes, so a crash recovery and a late answer cannot both close one."""
    await store.conn.executemany(
        "UPDATE commands SET state = ?, answer = ?, closed_at = ? "
        "WHERE id = ? AND state IN ('queued', 'sending', 'uncertain')",
        [(state, answer, now, i) for i, state, answer in closes],
    )


async def close(
    store: Store,
    closes: Sequence[tuple[int, State, str | None]],
    events: Callable[[], Awaitable[Sequence[Event]]],
    now: float,
) -> None:
    """Close commands and store their events (built in the transaction: they carry their
    orders' rows as it reads them) in one transaction."""
    async with store.transaction():
        await close_within(store, closes, now)
        await store.events.add(await events())


async def by_key_heads(store: Store, account: str, heads: Sequence[str]) -> list[Command]:
    """Return the commands whose key is one of `heads`, or one of them followed by `/...`."""
    found: list[Command] = []
    for i in range(0, len(heads), CHUNK - 1):
        chunk = heads[i : i + CHUNK - 1]
        # `/` comes right before `0`: the keys from `H` to before `H0` are a range the key's
        # index reads (one per head, as an OR of many ranges would not be), `H/...` among them.
        rows = await store.conn.execute_fetchall(
            f"WITH h (head) AS (VALUES {values(len(chunk), 1)}) SELECT {_COLUMNS} "
            "FROM h JOIN commands ON account = ? AND idempotency_key >= head "
            "AND idempotency_key < head || '0' AND (idempotency_key = head "
            "OR substr(idempotency_key, length(head) + 1, 1) = '/')",
            (*chunk, account),
        )
        found += map(_row, rows)
    return found
