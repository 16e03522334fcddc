"""A CCV submit's two commits (recorded before it is sent; closed, its order tracked) each go to
the database thread in one hand-off. On a busy machine every hand-off is a wait for a CPU, twice
(the thread, then the event loop): with one per statement a submit through reconciler took
several milliseconds more at p99 than with one per commit (bench/api.py)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.config import ReceiverConfig
from reconciler.config.secret import Secret
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.writes.submit import Submitter
from tests.conftest import count_handoffs
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import ccv_config

RECEIVER = ReceiverConfig(
    "127.0.0.1", 8080, "https://integrator.example/reconciler", Secret("s" * 32)
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


@contextlib.asynccontextmanager
async def submitter(
    tmp_path: Path, fake: FakeCCVWrites, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Submitter, list[Callable[..., Any]]]]:
    """A Submitter on a real store, and the list of functions handed to its database thread."""
    store = await Store.open(tmp_path / "r.db")
    handed = count_handoffs(monkeypatch, store)
    try:
        async with aiohttp.ClientSession() as session:
            accounts = [ccv_config(fake.base_url)]
            yield (
                Submitter(store, session, accounts=accounts, receiver=RECEIVER, gates=Gates()),
                handed,
            )
    finally:
        await store.close()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


async def test_a_submit_commits_twice_in_one_hand_off_each(
    tmp_path: Path, fake: FakeCCVWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with submitter(tmp_path, fake, monkeypatch) as (sub, handed):
        result = await sub.submit("default", submit_body(externalReference="shop-1"))
        assert len(handed) == 2

    assert (result.status, result.state) == (201, "succeeded")
    db = tmp_path / "r.db"
    assert rows(db, "SELECT state, order_id FROM submissions") == [("succeeded", result.order_id)]
    assert rows(db, "SELECT order_id, external_reference FROM orders") == [
        (result.order_id, "shop-1")
    ]


async def test_a_refused_submit_commits_twice_in_one_hand_off_each(
    tmp_path: Path, fake: FakeCCVWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.submit_replies.append(json_reply(400, {"message": "order is required"}))
    async with submitter(tmp_path, fake, monkeypatch) as (sub, handed):
        result = await sub.submit("default", submit_body(externalReference="shop-1"))
        assert len(handed) == 2

    assert (result.status, result.state) == (400, "failed")
    db = tmp_path / "r.db"
    assert rows(db, "SELECT state, http_status FROM submissions") == [("failed", 400)]
    assert rows(db, "SELECT count(*) FROM orders") == [(0,)]
