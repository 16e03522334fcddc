"""A sink's read of its deliverable events (store/due.py) on a real SQLite file: one hand-off
to the database thread, the backlog's page in one row, the bodies exactly as stored."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.events import Event
from reconciler.model import EventType
from reconciler.store import Store
from reconciler.store.due import FRESH, fresh_page
from tests.conftest import copy_new_store, count_handoffs, new_store_file


def event(n: int, text: str) -> Event:
    data = {"source": "ccv", "account": "default", "order_id": f"o{n}", "status": text}
    return Event(f"e-{n}", EventType.STATUS_CHANGED, 1.0, "ccv", "default", f"o{n}", "info", data)


# Non-ASCII, escapes and what JSON escapes: the body's bytes must come back as stored.
TEXTS = ["Straße ✓ 😀", 'a "quoted" \\ back', "tab\there\nnewline\u2028", "\x00\x1f", ""]


@pytest.fixture(scope="module")
def new_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new store, made once: each example's is a copy of it."""
    return new_store_file(tmp_path_factory.mktemp("new") / "reconciler.db", ("log",))


@settings(max_examples=25, deadline=None)
@given(texts=st.lists(st.one_of(st.text(max_size=40), st.sampled_from(TEXTS)), max_size=12))
def test_the_page_read_as_one_row_is_the_page_read_row_by_row(
    new_store: Path, texts: list[str]
) -> None:
    async def check(path: Path) -> None:
        copy_new_store(new_store, path / "reconciler.db")
        store = await Store.open(path / "reconciler.db", sinks=("log",))
        try:
            async with store.transaction():
                await store.events.add([event(n, t) for n, t in enumerate(texts, 1)])
            stored = {e.seq: e.body for e in await store.events.history()}
            due = await store.outbox.due("log", 2.0, 5)
            assert [r.body for r in due.rows] == [stored[r.seq] for r in due.rows]
        finally:
            await store.close()
        conn = sqlite3.connect(path / "reconciler.db")
        try:
            for after, limit in ((0, 100), (0, 5), (3, 4)):
                assert fresh_page(conn, "log", after, limit) == [
                    tuple(r) for r in conn.execute(FRESH, ("log", after, limit)).fetchall()
                ]
        finally:
            conn.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(check(Path(tmp)))


async def test_a_body_holding_a_raw_newline_comes_back_as_stored(tmp_path: Path) -> None:
    # No body this program writes holds one (JSON escapes it), but one written by hand may: the
    # joined page cannot be cut, and the rows are read one by one.
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        async with store.transaction():
            await store.events.add([event(n, "x") for n in range(1, 4)])
            await store.conn.execute("UPDATE events SET body = ? WHERE seq = 2", (b'{"a":\n1}',))
        due = await store.outbox.due("log", 2.0, 10)
        assert [(r.seq, r.id) for r in due.rows] == [(1, "e-1"), (2, "e-2"), (3, "e-3")]
        assert due.rows[1].body == b'{"a":\n1}'
    finally:
        await store.close()


async def test_a_sink_s_read_of_a_backlog_is_one_hand_off_to_the_database_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each hand-off waits for the busy event loop twice; each row step of a read row by row
    # waits for the GIL (0.4-2.5 s for 500 rows while a catch-up's requests ran).
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        async with store.transaction():
            await store.events.add([event(n, "New") for n in range(1, 1201)])
        await store.outbox.failed("log", [(3, "http 503", 5.0)])  # a retried event too
        handed = count_handoffs(monkeypatch, store)
        due = await store.outbox.due("log", 10.0, 500)
        assert len(handed) == 1
        assert [r.seq for r in due.rows] == [1, 2, 3, *range(4, 501)][:500]
        assert due.full
    finally:
        await store.close()


def test_an_sqlite_without_its_json_functions_reads_the_page_row_by_row(tmp_path: Path) -> None:
    # Before 3.38, SQLite's JSON functions were a build option: the page is read the old way.
    async def fill() -> None:
        store = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
        try:
            async with store.transaction():
                await store.events.add([event(n, "x") for n in range(1, 4)])
        finally:
            await store.close()

    asyncio.run(fill())
    conn = sqlite3.connect(tmp_path / "reconciler.db")
    try:

        def missing(*args: object) -> None:
            raise sqlite3.OperationalError("no such function: json_group_array")

        conn.create_function("json_group_array", 1, missing)
        expected = [tuple(r) for r in conn.execute(FRESH, ("log", 0, 10)).fetchall()]
        assert [r[0] for r in expected] == [1, 2, 3]
        assert fresh_page(conn, "log", 0, 10) == expected
    finally:
        conn.close()
