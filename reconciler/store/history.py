"""Whether the database's history went back: a restore from a backup, a lost WAL file.

An order event's id is derived from the order's place in its history (`events.transition_id`).
A database put back to an earlier state counts those places again, and a transition that
differs from the one first seen at a place (an order that went A -> B -> A -> B meanwhile) would
get the id a sink already has: a consumer that deduplicates on the id (`webhook-id`) would drop
a real change. So beside the database a small file, `<database>-history`, keeps the highest
event seq this store committed and the epoch its ids were made in. A database that holds less
than that, or is of another epoch, has gone back, and from then on its ids are made in a new
epoch (a random word kept in `meta`): no id comes again. A transition seen again after the
rewind then gets a new id too; a consumer applying a status twice is harmless, one dropping a
change is not. The epoch matters after a second restore: a backup newer than the first one
restored holds more events than the mark lowered to the first one's count, but not its epoch.

The mark also keeps the seqs going forward: a database that holds fewer events than the mark
(a restore, or another database put in its place) numbers its next events after the mark's
(`seq_floor` in `meta`). Else it would number new events with seqs a feed reader already passed,
and a cursor kept from before the restore would skip them in silence.

A CCNow command's claim (`commands.mark_sending`: a post about to leave) stores no event, but
hands out a seq no event takes (`skip_seq`): the mark then counts the claim, and a database that
lost it (a lost WAL) has gone back, so the command it holds queued is not sent a second time as
a new one (rewound.py). A CCV submit's claim (`submissions.record`, `claim`) hands one out too:
a database that lost it does not know the submit, and says so (`store.history_rewound`). The
gap this leaves in the seqs is harmless: the feed's cursor moves on to the highest seq handed
out, and the next event's seq follows it.

The mark is written after each commit that stored events or made a claim, without fsync:
after a power loss it may be behind the database (a rewind then goes unseen for the commits
after it), never ahead; but a new epoch's is written just before its commit, so that another
process opening the store meanwhile never takes that epoch for a rewind (`open_history`).
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from ..logs import fields
from ..paths import HISTORY, beside
from .files import open_beside
from .sql import on_thread

if TYPE_CHECKING:
    from .db import Store

log = logging.getLogger("reconciler.store")

_MAX_MARK = 200
_NO_EPOCH = "-"
# Every mark's width (a store id, an epoch and a seq take 74 characters; a two-field mark 57).
_WIDTH = 99


class HistoryMark:
    """The mark beside one store: its id, the epoch its ids are made in and the highest event
    seq it committed."""

    def __init__(self, fd: int, path: Path, store_id: str, epoch: str | None, seq: int) -> None:
        self._fd: int | None = fd
        self._path = path
        self._store_id = store_id
        self._epoch = epoch
        self.seq = seq

    def note(self, seq: int) -> None:
        """Keep `seq` if it is higher than the mark (after a commit that stored events)."""
        if seq > self.seq:
            self._write(seq)

    def follow(self, epoch: str) -> None:
        """Hold `epoch` from the next note on: another process started it (`follow`)."""
        self._epoch = epoch

    def start(self, epoch: str, seq: int) -> None:
        """Hold `epoch` from now on, and `seq` (a database that went back: its new epoch)."""
        self._epoch = epoch
        self._write(seq)

    def _write(self, seq: int) -> None:
        if self._fd is None:
            return
        self.seq = seq
        # Fixed width, wider than the first marks' two fields: one write
        # replaces the whole mark, no truncation between.
        line = f"{self._store_id} {self._epoch or _NO_EPOCH} {seq:020d}".ljust(_WIDTH) + "\n"
        try:
            os.pwrite(self._fd, line.encode(), 0)
        except OSError as exc:
            _mark_failed(self._path, exc)
            self.close()

    def close(self) -> None:
        """Close the mark's file; later notes are dropped."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class _Marked:
    seq: int
    epoch: str | None
    # A mark of the release before epochs were marked: its epoch is not known.
    epoch_known: bool = True


def _read_mark(raw: bytes, store_id: str) -> _Marked | None:
    """Return what a mark holds for `store_id`, or None (another store's, or unreadable)."""
    parts = _mark_parts(raw)
    if not parts or parts[0] != store_id:
        return None
    if len(parts) == 2:
        return _Marked(int(parts[1]), None, epoch_known=False)
    if len(parts) == 3:
        return _Marked(int(parts[2]), None if parts[1] == _NO_EPOCH else parts[1])
    return None


def _mark_parts(raw: bytes) -> list[str]:
    # The first line only: a release before this one writes its shorter mark over a longer one.
    parts = raw.split(b"\n", 1)[0].decode("ascii", "replace").split()
    # A seq SQLite can hold (a damaged mark may hold any number): else it is no mark.
    readable = len(parts) in (2, 3) and parts[-1].isdigit() and int(parts[-1]) < 2**63
    return parts if readable else []


def _why_unread(raw: bytes) -> str:
    """Say why a mark holds nothing for this store."""
    if not raw.strip(b"\0 \n"):
        return "missing"
    return "another store's" if _mark_parts(raw) else "unreadable"


def _mark_failed(path: Path, exc: OSError) -> None:
    log.warning(
        "store.history_mark_failed",
        extra=fields(
            path=str(path),
            error=exc.strerror,
            hint="not kept by this process: a restore of the database goes unseen; let its "
            "user create and write this file",
        ),
    )


def _marked_seq(raw: bytes) -> int:
    """Return the highest seq a mark says was committed at this path, whatever store's."""
    parts = _mark_parts(raw)
    return int(parts[-1]) if parts else 0


def _gone_back(marked: _Marked, last: int, epoch: str | None) -> str | None:
    """Say how the database went back since the mark was written, if it did."""
    if marked.seq > last:
        return "fewer events than committed"
    if marked.epoch_known and marked.epoch != epoch:
        return "another epoch than committed"
    return None


async def open_history(
    conn: aiosqlite.Connection, path: Path, store_id: str
) -> tuple[HistoryMark | None, str | None]:
    """Open the mark beside the database at `path` and return it with the id epoch in force:
    a new one when the database holds fewer events than the mark says it committed, or its
    epoch is not the mark's."""
    try:
        fd = open_beside(beside(path, HISTORY), path)
    except OSError as exc:
        # Ids are then as they were before marks: a rewind goes unseen, nothing else changes.
        _mark_failed(beside(path, HISTORY), exc)
        return None, await _epoch(conn)
    # The mark first, the database after: a mark is written after its commit, so another
    # process committing meanwhile can never make the mark look ahead of the database (a new
    # epoch's mark, written before its commit, is read again below).
    raw = os.pread(fd, _MAX_MARK, 0)
    marked = _read_mark(raw, store_id)
    stored = await highest_seq(conn)
    epoch = await _epoch(conn)
    why = None if marked is None else _gone_back(marked, stored, epoch)
    if marked is not None and why is not None and marked.epoch != epoch:
        # Another process opening the store may have found this rewind since the mark was
        # read, and started the epoch read from the database: it writes its mark before it
        # commits the epoch (`_new_epoch`), so the mark read again holds it. Taken for a
        # rewind of our own, the commands it made since would be noted as left open by it.
        raw = os.pread(fd, _MAX_MARK, 0)
        again = _read_mark(raw, store_id)
        if again is not None and again.epoch_known and again.epoch == epoch:
            marked, why = again, None
    if marked is not None and why is not None:
        mark = HistoryMark(fd, beside(path, HISTORY), store_id, None, 0)
        epoch = await _new_epoch(conn, epoch, _marked_seq(raw), mark)
        log.warning(
            "store.history_rewound",
            extra=fields(
                path=str(path),
                events=stored,
                committed_before=marked.seq,
                reason=why,
                hint="restored from a backup? new events get new ids, open CCNow discounts "
                "become uncertain",
            ),
        )
        return mark, epoch
    # Before this process stores an event: its seq must follow the mark's, also when the mark is
    # another store's (a database put in this one's place).
    last = stored
    if _marked_seq(raw) > stored:
        last = await _raise_floor(conn, _marked_seq(raw))
    if marked is None and stored:
        # What the mark was for, a restore since, goes unseen: the operator should know.
        log.warning(
            "store.history_rebuilt",
            extra=fields(
                path=str(beside(path, HISTORY)),
                events=stored,
                reason=_why_unread(raw),
                hint="a restore of the database before now goes unseen",
            ),
        )
    if marked is None or not marked.epoch_known:
        # The database's own count and epoch from now on.
        mark = HistoryMark(fd, beside(path, HISTORY), store_id, epoch, last)
        mark._write(last)
    else:
        mark = HistoryMark(fd, beside(path, HISTORY), store_id, epoch, min(marked.seq, last))
    return mark, epoch


# The highest seq stored, or handed out before the database went back (`seq_floor`): the next
# event's seq follows it. One statement: the feed reads it in the snapshot of its page.
LAST_SEQ = (
    "SELECT max(ifnull((SELECT max(seq) FROM events), 0), "
    "ifnull((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq_floor'), 0))"
)


async def highest_seq(conn: aiosqlite.Connection) -> int:
    """Return the highest seq stored or handed out (0: none)."""
    rows = await conn.execute_fetchall(LAST_SEQ)
    return int(next(iter(rows))[0])


# Makes the next event's seq follow a seq at least; bound to the highest seq and one, it hands
# out a seq no event takes (`skip_seq`).
RAISE_FLOOR = (
    "INSERT OR REPLACE INTO meta (key, value) VALUES ('seq_floor', "
    "max(?, ifnull((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq_floor'), 0)))"
)


async def begin(conn: aiosqlite.Connection) -> int:
    """Begin a write transaction and return SQLite's data_version in it, in one hand-off to
    the database thread: the number moves when another connection commits (`follow`)."""
    return await on_thread(conn, _begin)


def _begin(conn: sqlite3.Connection) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        return int(conn.execute("PRAGMA data_version").fetchall()[0][0])
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# The highest seq stored or handed out, and the epoch: what `follow` takes up.
FOLLOW = f"SELECT ({LAST_SEQ}), (SELECT value FROM meta WHERE key = 'id_epoch')"


async def follow(store: Store, version: int) -> None:
    """Take up, in a write transaction, what another process's commit may have moved: the
    highest seq and the epoch. Only the writer stores events, but any process opening the
    store to write (`track`, `untrack` beside the daemon) may find the database went back,
    raise the seq floor and start an epoch (`open_history`): the writer's next events must
    follow that floor (a feed cursor handed out before the rewind would skip them), with ids
    of that epoch, and its mark must not put its old epoch back (the next open would take that
    for another rewind)."""
    last, epoch = next(iter(await store.conn.execute_fetchall(FOLLOW)))
    took_up(store, version, int(last), epoch)


def took_up(store: Store, version: int, last: int, epoch: str | None) -> None:
    """Hold what a write transaction (`follow`'s, a claim's) read of the database at its
    data_version `version`: `last`, the highest seq, and `epoch`. The version is kept last: a
    follow cut short (cancelled, its read failed) is done again by the next transaction."""
    store.events.seq_moved(last)
    store_id, _, held = store.store_id.partition("/")
    if epoch is not None and epoch != held:
        store.store_id = f"{store_id}/{epoch}"
        if store.history is not None:
            store.history.follow(str(epoch))
    store.followed_version = version


async def _raise_floor(conn: aiosqlite.Connection, seq: int) -> int:
    """Make the next event's seq follow `seq` at least; return the highest seq now."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.execute(RAISE_FLOOR, (seq,))
        last = await highest_seq(conn)
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
    return last


# The highest command id when the rewind was found: the next writer settles every open command
# up to it (rewound.py), and deletes this.
REWOUND_KEY = "rewound_commands"
_REWOUND_COMMANDS = (
    "INSERT OR REPLACE INTO meta (key, value) "
    f"VALUES ('{REWOUND_KEY}', (SELECT ifnull(max(id), 0) FROM commands))"
)


async def _epoch(conn: aiosqlite.Connection) -> str | None:
    rows = await conn.execute_fetchall("SELECT value FROM meta WHERE key = 'id_epoch'")
    return next((str(r[0]) for r in rows), None)


async def _new_epoch(
    conn: aiosqlite.Connection, seen: str | None, floor: int, mark: HistoryMark
) -> str:
    """Start a new epoch and return it; or the one another process opening the store started
    since the epoch `seen` was read (both saw the same rewind: one epoch for both). The next
    event's seq follows `floor` (the mark's), and `mark` holds the epoch and the highest seq."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        epoch = await _epoch(conn)
        if epoch is None or epoch == seen:
            epoch = secrets.token_hex(8)
            await conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('id_epoch', ?)", (epoch,)
            )
            # In the new epoch's transaction, so that no open can see the rewind and forget
            # it: the CCNow actions it left open may have been sent since (rewound.py).
            await conn.execute(_REWOUND_COMMANDS)
        await conn.execute(RAISE_FLOOR, (floor,))
        # Before the commit: an open that reads this epoch from the database then finds it in
        # the mark too, and takes it for no rewind (open_history). A commit that fails leaves
        # the mark ahead, which the next open takes for a rewind: the same commands open.
        mark.start(epoch, await highest_seq(conn))
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
    return epoch
