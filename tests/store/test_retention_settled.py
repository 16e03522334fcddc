"""Retention of settled orders (CCNow `completed`, `refunded`; CCV `Failed`): watched for
`watch_settled`, then never checked again, they go with the ended ones once their last change is
older than `keep_events`; and the counts of statuses no order is in any more go too."""

from __future__ import annotations

import ast
import inspect
import re
import sqlite3
from pathlib import Path

from reconciler.model import SETTLED
from reconciler.store import Store, migrations
from reconciler.store.counts import FULL_COUNT_SQL
from reconciler.store.retention import SETTLED_ORDERS, prune
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow, FakeCCV
from tests.store.test_retention import _age

ORDERS = ["396-10-0001", "396-10-0002", "396-10-0003", "396-10-0004"]


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        rows = list(conn.execute(sql).fetchall())
    conn.close()
    return rows


def _keep(cfg: Path, keep: str) -> None:
    cfg.write_text(cfg.read_text().replace("[store]\n", f'[store]\nkeep_events = "{keep}"\n', 1))


async def _pruned(cfg: Path) -> dict[str, object]:
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    (line,) = [x for x in result.log_lines() if x.get("message") == "store.pruned"]
    return line


async def test_settled_orders_past_their_watch_are_pruned_as_ended_ones(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    completed, refunded, pending, canceled = ORDERS
    fake_ccnow.orders = {
        completed: "completed",
        refunded: "refunded",
        pending: "pending",
        canceled: "canceled",
    }
    cfg = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra='watch_settled = "40d"')
    _keep(cfg, "30d")
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccnow", *ORDERS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0

    # 35 days on: past the window, but the settled ones are still watched; the ended one goes.
    _age(db, 35)
    assert (await _pruned(cfg))["orders"] == 1
    left = {r[0] for r in _rows(db, "SELECT order_id FROM orders")}
    assert left == {completed, refunded, pending}

    # 45 days on: past their watch, never checked again; they go, the open one stays.
    _age(db, 10)
    assert (await _pruned(cfg))["orders"] == 2
    assert [r[0] for r in _rows(db, "SELECT order_id FROM orders")] == [pending]
    # No count of a status nobody is in is kept; what is kept equals a full count.
    assert _rows(db, "SELECT count(*) FROM order_counts WHERE n = 0") == [(0,)]
    kept = _rows(db, "SELECT source, account, nullif(status, ''), n FROM order_counts")
    assert sorted(kept) == sorted(_rows(db, FULL_COUNT_SQL))


async def test_an_unnamed_accounts_orders_no_longer_watched_are_not_warned_about_and_go(
    tmp_path: Path, fake_ccnow: FakeCCNow, fake_ccv: FakeCCV
) -> None:
    # Settled at once past a watch of 0 s: never checked again, as after 180 days.
    fake_ccnow.orders = dict(zip(ORDERS[:3], ("completed", "refunded", "canceled"), strict=True))
    cfg = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra='watch_settled = "0s"')
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccnow", *ORDERS[:3])).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0

    # [ccnow] removed: nothing of it is left to check, so no warning (README "Renaming or
    # removing an account"), from `check` nor `catch-up`.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    for command in ("check", "catch-up"):
        result = await call_cli("--config", cfg, command)
        assert result.code == 0, result.stderr
        warned = [x for x in result.log_lines() if x["message"] == "orders.account_not_configured"]
        assert warned == []
    assert len(_rows(db, "SELECT * FROM orders")) == 3

    # Nobody watches its settled orders: once older than the window they go, as ended ones.
    _age(db, 401)
    assert (await _pruned(cfg))["orders"] == 3
    assert _rows(db, "SELECT count(*) FROM orders") == [(0,)]
    assert _rows(db, "SELECT * FROM order_counts") == []


async def test_a_removed_account_s_settled_orders_are_not_warned_about_then_pruned(
    tmp_path: Path, fake_ccnow: FakeCCNow, fake_ccv: FakeCCV
) -> None:
    # Watched for the default 180 days while the account is named; once it is removed nobody
    # watches them, as retention has it. The warning said `open_orders: 1` from day 1 to the
    # catch-up of day 401 that deleted the order ("name it again, or untrack them").
    completed, pending = ORDERS[:2]
    fake_ccnow.orders = {completed: "completed", pending: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccnow", completed, pending)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0

    cfg = write_config(tmp_path, ccv=fake_ccv)
    result = await call_cli("--config", cfg, "check")
    assert result.code == 0, result.stderr
    warned = [x for x in result.log_lines() if x["message"] == "orders.account_not_configured"]
    assert [(x["open_orders"], x["followed"]) for x in warned] == [(1, 2)]  # the pending one

    assert (
        await call_cli("--config", cfg, "untrack", "ccnow", pending, "--account", "default")
    ).code == 0
    _age(db, 401)
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    messages = [x["message"] for x in result.log_lines()]
    assert "orders.account_not_configured" not in messages
    (line,) = [x for x in result.log_lines() if x["message"] == "store.pruned"]
    assert line["orders"] == 1
    assert _rows(db, "SELECT count(*) FROM orders") == [(0,)]


def test_the_index_of_settled_orders_holds_the_settled_statuses() -> None:
    # The index's words are model.py's: a new settled status needs a new index (a migration).
    settled = sorted(status for words in SETTLED.values() for status in words)
    words = sorted(re.findall(r"status = '([^']*)'", SETTLED_ORDERS))
    assert words == settled


def test_migration_18_is_written_out() -> None:
    # Built from SETTLED_ORDERS, a word added there would have changed it too: stores at 18
    # would keep the old index, and retention's INDEXED BY would fail ("no query solution").
    tree = ast.parse(inspect.getsource(migrations))
    (listed,) = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == "MIGRATIONS"
    ]
    assert isinstance(listed, ast.Tuple)
    assert isinstance(listed.elts[17], ast.Constant)


async def test_retention_names_the_index_the_migrations_made(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    await store.close()
    ((made,),) = _rows(
        tmp_path / "reconciler.db",
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'orders_settled'",
    )
    assert " ".join(str(made).split()).endswith(f" WHERE {SETTLED_ORDERS}")


async def test_each_chunk_of_the_settled_prune_starts_where_the_last_ended(
    tmp_path: Path,
) -> None:
    # Orders still watched (a watch_settled longer than the window) stay in the index before
    # the next chunk: without a lower bound on the index range every chunk read them again
    # (1M orders, 300k such: the last chunk held the writer 20 ms instead of 2).
    db = tmp_path / "reconciler.db"
    store = await Store.open(db)
    try:
        with sqlite3.connect(db) as conn:
            conn.executemany(
                "INSERT INTO orders (source, account, order_id, status, last_changed) "
                "VALUES ('ccnow', ?, ?, 'completed', ?)",
                [(("long", "short")[n % 2], f"396-10-{n:04d}", 1000.0 + n) for n in range(30)],
            )
        conn.close()
        statements: list[str] = []
        await store.conn.set_trace_callback(statements.append)
        report = await prune(
            store,
            sinks=["log"],
            keep_s=10.0,
            now=2000.0,
            watched={("ccnow", "long"): 10_000.0, ("ccnow", "short"): 0.0},
            chunk=4,
        )
    finally:
        await store.close()
    assert report.orders == 15  # the short watch's, between the long watch's
    reads = [s for s in statements if "INDEXED BY orders_settled" in s]
    assert len(reads) > 4
    with sqlite3.connect(db) as conn:
        for sql in reads:
            plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "orders_settled (<expr>>? AND <expr><?)" in plan, plan
    conn.close()


async def test_counts_of_status_words_nobody_is_in_any_more_go(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # A provider that numbers its status words would grow the counts table without end.
    order = "5a6b7c8d-0000-4000-8000-000000000001"
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccv", order)).code == 0
    for step in range(1, 4):
        fake_ccv.orders = {order: f"Processing step {step}"}
        await call_cli("--config", cfg, "catch-up")  # its end prunes
    kept = _rows(db, "SELECT status, n FROM order_counts")
    assert kept == [("Processing step 3", 1)]


async def test_an_order_s_update_opens_no_temporary_table_for_the_settled_index(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The index's first form (`status IN (...)`) made SQLite build a temporary b-tree for the
    # old and the new row of every update of an order: a first catch-up's database thread did
    # 12 % more instructions. The store's own schema, as a track makes it.
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", ORDERS[0])).code == 0
    program = _rows(
        tmp_path / "reconciler.db",
        "EXPLAIN UPDATE orders SET status = 'completed', last_changed = 1.0 WHERE id = 1",
    )
    opcodes = {row[1] for row in program}
    assert "IdxInsert" in opcodes  # the settled index is maintained by this statement
    assert "OpenEphemeral" not in opcodes
