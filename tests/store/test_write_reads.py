"""What the writes (CCV submits, CCNow actions) cost to read follows the few rows concerned, not
the table: a notification reads the uncertain submit of its own reference, `status` the
uncertain references of every account at once, and nothing reads every write of the retention
window (SQLite reads a partial index only for a query that repeats its WHERE). Whose a submit
left `sending` is, a running writer's or a stopped process's, is told in one place, for `status`
and `track` alike."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.commands.status_report import gather_status
from reconciler.config import load_config
from reconciler.store import Store, WriterLock, unsettled
from reconciler.store import commands as cmds
from reconciler.store import submissions as subs
from reconciler.store.files import writer_running
from reconciler.store.not_sent import not_sent
from reconciler.store.notified import notified
from tests.conftest import cli_env, environ, write_config
from tests.fake_providers import FakeCCV

ACCOUNTS = ("default", "north", "south")
CLOSED = 300  # submits of the retention window that CCV answered


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose accounts each hold two uncertain submits, one left `sending`, and many
    closed ones."""
    path = tmp_path / "reconciler.db"
    store = await Store.open(path, sinks=["jsonl"])
    await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO submissions (account, external_reference, state, created_at, closed_at) "
            "VALUES (?, ?, ?, 1.0, ?)",
            [
                row
                for a in ACCOUNTS
                for row in [
                    (a, f"{a}-U1", "uncertain", 2.0),
                    (a, f"{a}-U2", "uncertain", 2.0),
                    (a, f"{a}-S", "sending", None),
                    *((a, f"{a}-C{i}", "succeeded", 2.0) for i in range(CLOSED)),
                ]
            ],
        )
    store = await Store.open(path, sinks=["jsonl"])
    try:
        yield store
    finally:
        await store.close()


def reads(db: Path, statements: list[str]) -> dict[str, str]:
    """Return the query plan of each statement that reads."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {
            sql: " | ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            for sql in statements
            if sql.lstrip().upper().startswith("SELECT")
        }


def whole_table(plans: dict[str, str], table: str = "submissions") -> dict[str, str]:
    """The plans that read a whole table, or every row of an account (an index searched by
    the account alone): the writes of the retention window either way."""
    return {
        sql: plan
        for sql, plan in plans.items()
        if f"SCAN {table}" in plan
        or re.search(rf"SEARCH {table} USING (COVERING )?INDEX \w+ \(account=\?\)", plan)
    }


async def test_a_notification_reads_the_uncertain_submit_of_its_reference_alone(
    store: Store,
) -> None:
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    done = await notified(store, "north", "north-U2", None, time.time(), remember=False)
    # One of a reference with no uncertain submit reads its failed ones (closed as not sent?).
    other = await notified(store, "north", "north-F", None, time.time(), remember=True)
    await store.conn.set_trace_callback(lambda _: None)
    assert [e.data["external_reference"] for e in done.events] == ["north-U2"]
    assert (other.events, other.remembered, other.reason) == ([], True, None)
    plans = reads(Path(store.path), statements)
    read = [plan for plan in plans.values() if "submissions" in plan]
    assert read and all("(account=? AND external_reference=?)" in plan for plan in read), plans
    left = await unsettled.uncertain_references(store)
    assert left == {"default": {"default-U1", "default-U2"}, "north": {"north-U1"}} | {
        "south": {"south-U1", "south-U2"}
    }


async def test_status_reads_every_accounts_uncertain_references_in_one_query(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    with environ(cli_env()):
        config = load_config(write_config(tmp_path, ccv=fake_ccv))
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    status = await gather_status(config, store, time.time())
    await store.conn.set_trace_callback(lambda _: None)
    # No writer runs: the submits left `sending` wait for a person's word too.
    assert {a.account: a.uncertain_of for a in status.accounts} == {
        a: (f"{a}-S", f"{a}-U1", f"{a}-U2") for a in ACCOUNTS
    }
    plans = reads(Path(store.path), statements)
    assert not whole_table(plans), whole_table(plans)
    assert len([s for s in plans if "external_reference FROM submissions" in s]) == 1


@pytest.mark.parametrize("running", [False, True])
async def test_status_tells_the_submits_and_the_posts_left_sending_by_the_writer_lock(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV, running: bool
) -> None:
    # A real lock, held or not: both lists are a running writer's while it is held, a stopped
    # process's (uncertain) when it is not. That status asks the lock once for both is the
    # code's (files.writer_running); no test of two processes here can catch a second look.
    with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
        conn.execute(
            "INSERT INTO commands (account, order_id, action, idempotency_key, state, "
            "created_at) VALUES ('default', '396-10-0009', 'adjust', 'k9', 'sending', 1.0)"
        )
    with environ(cli_env()):
        config = load_config(write_config(tmp_path, ccv=fake_ccv))
    lock = WriterLock(Path(store.path))
    if running:
        lock.acquire()
    try:
        status = await gather_status(config, store, time.time())
    finally:
        lock.release()
    by = {(a.source, a.account): a for a in status.accounts}
    ccv, ccnow = by[("ccv", "default")], by[("ccnow", "default")]
    sending = (ccv.sending_of, ccnow.sending_of)
    assert sending == ((("default-S",), ("396-10-0009",)) if running else ((), ()))
    assert ("default-S" in ccv.uncertain_of, ccnow.uncertain_writes) == (
        (False, 0) if running else (True, 1)
    )


@pytest.mark.parametrize("running", [False, True])
async def test_a_submit_left_sending_is_a_running_writers_only_while_one_holds_the_lock(
    store: Store, running: bool
) -> None:
    lock = WriterLock(Path(store.path))
    if running:
        lock.acquire()
    try:
        left = tuple(await subs.interrupted(store))
        writing = writer_running(Path(store.path), left)
    finally:
        lock.release()
    assert sorted(s.external_reference for s in left) == [f"{a}-S" for a in ACCOUNTS]
    assert writing is running


async def test_a_writer_settling_what_a_stopped_process_left_or_a_live_lookup_reads_no_whole_table(
    store: Store,
) -> None:
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    left = await subs.interrupted(store)
    counts = await unsettled.unsettled_counts(store)
    found = await subs.find(store, "north", "north-C7")
    resolved = await subs.resolve_many(
        store, "south", [("A-1", "south-U1"), ("A-2", "south-C1")], "track", time.time()
    )
    await store.conn.set_trace_callback(lambda _: None)
    assert [s.external_reference for s in left] == [f"{a}-S" for a in ACCOUNTS]
    assert counts == dict.fromkeys(ACCOUNTS, 3)
    assert found is not None and found.state == "succeeded"
    assert [e.data["external_reference"] for e in resolved] == ["south-U1"]
    plans = reads(Path(store.path), statements)
    assert plans and not whole_table(plans), whole_table(plans)


@pytest.mark.parametrize(
    ("reference", "settled", "remembered", "looks"),
    [
        ("north-U1", ["north-U1"], False, 1),  # uncertain: settled
        ("north-S", [], True, 1),  # waiting for CCV's answer: remembered
        ("north-F", [], False, 2),  # none live: its latest failed one is looked at too
    ],
)
async def test_a_notification_reads_its_references_live_submit_once(
    store: Store, reference: str, settled: list[str], remembered: bool, looks: int
) -> None:
    # Before, the live row was read up to three times: as uncertain, as found, as `sending`.
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    done = await notified(store, "north", reference, None, time.time(), remember=False)
    await store.conn.set_trace_callback(lambda _: None)
    assert [e.data["external_reference"] for e in done.events] == settled
    assert (done.remembered, done.reason) == (remembered, None)
    read = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "submissions" in s]
    assert len(read) == looks, read


async def test_the_action_queue_a_writers_start_and_status_read_no_whole_commands_table(
    store: Store,
) -> None:
    with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
        conn.executemany(
            "INSERT INTO commands (account, order_id, action, idempotency_key, state, "
            "created_at, closed_at) VALUES ('default', ?, 'ship', ?, ?, 1.0, ?)",
            [
                (f"396-10-{i:04d}", f"k{i}", state, None if state == "queued" else 2.0)
                for i, state in enumerate(["queued", "uncertain", *["succeeded"] * CLOSED])
            ],
        )
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    due = await cmds.due(store, time.time())
    sending = await cmds.in_state(store, "sending")
    uncertain = await cmds.of_order(store, "default", "396-10-0001", ["uncertain"])
    ahead = await cmds.ahead(store, due)
    accounts = await cmds.uncertain_accounts(store, "396-10-0001")
    counts = await unsettled.action_counts(store)
    await store.conn.set_trace_callback(lambda _: None)
    assert ([c.order_id for c in due], sending) == (["396-10-0000"], [])
    assert ([c.key for c in uncertain], accounts) == (["k1"], ["default"])
    assert counts == {("default", "queued"): 1, ("default", "uncertain"): 1}
    assert ahead == {}
    plans = reads(Path(store.path), statements)
    assert len(plans) == 6 and not whole_table(plans, "commands"), plans


async def test_a_lookup_finds_the_live_submit_else_the_latest_that_failed(store: Store) -> None:
    with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
        conn.executemany(
            "INSERT INTO submissions (account, external_reference, state, reason, created_at) "
            "VALUES ('default', ?, 'failed', ?, 1.0)",
            [("north-C3", "first"), ("F-1", "first"), ("F-1", "second")],
        )
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    live = await subs.find(store, "north", "north-C3")
    assert live is not None and live.state == "succeeded"
    failed = await subs.find(store, "default", "north-C3")
    assert failed is not None and failed.reason == "first"
    failed = await subs.find(store, "default", "F-1")
    assert failed is not None and (failed.state, failed.reason) == ("failed", "second")
    assert await subs.find(store, "default", "F-2") is None
    await store.conn.set_trace_callback(lambda _: None)
    # Each CCV notification of a reference without an uncertain submit reads its failed ones
    # (one closed as never sent is settled by it): before migration 23, every submit's row.
    plans = reads(Path(store.path), statements)
    assert plans and not whole_table(plans), whole_table(plans)
    assert not [p for p in plans.values() if "TEMP B-TREE" in p], plans


async def test_a_long_list_of_references_settles_its_uncertain_submits_in_one_read(
    store: Store,
) -> None:
    # `track --from-file` of many orders: the account's few uncertain submits are read once.
    references = [f"south-C{i}" for i in range(CLOSED)] * 2 + ["south-U2", "north-U1"]
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    resolved = await subs.resolve_many(
        store, "south", [(None, ref) for ref in references], "track", time.time()
    )
    await store.conn.set_trace_callback(lambda _: None)
    assert [e.data["external_reference"] for e in resolved] == ["south-U2"]
    plans = reads(Path(store.path), statements)
    assert len([s for s in plans if "FROM submissions" in s]) == 2, plans  # count, then read
    assert not whole_table(plans), whole_table(plans)
    assert await unsettled.uncertain_references(store) == {
        "default": {"default-U1", "default-U2"},
        "north": {"north-U1", "north-U2"},
        "south": {"south-U1"},
    }


async def test_a_person_closing_an_uncertain_submit_as_not_sent_reads_no_whole_table(
    store: Store,
) -> None:
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)
    found, events = await not_sent(store, "north", "north-U1", time.time())
    await store.conn.set_trace_callback(lambda _: None)
    assert found is not None and (found.state, found.reason) == ("failed", "not_sent")
    assert [e.data["how"] for e in events] == ["not_sent"]
    plans = reads(Path(store.path), statements)
    assert plans and not whole_table(plans), whole_table(plans)
