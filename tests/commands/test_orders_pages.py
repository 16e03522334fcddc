"""`orders` on many orders: the snapshot is read along its key a page at a time and each page
printed as it comes (DESIGN invariant 6: memory bounded by configuration, not by the number of
orders), on a real SQLite file; `--json` is the document it always was, written piecewise."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from pathlib import Path

from reconciler.commands.orders import print_orders
from reconciler.config import load_config
from reconciler.order_view import order_json
from reconciler.store import Store, order_pages
from tests.conftest import call_cli, cli_env, environ, write_config
from tests.fake_providers import FakeCCNow, FakeCCV

CCNOW = [f"396-10-{n:04d}" for n in range(12)]
CCV = [f"0b7c1f3e-0000-4000-8000-{n:012d}" for n in range(13)]


async def _store(db: Path) -> None:
    """25 orders: 12 CCNow ones (short ids, some `pending`), then 13 CCV ones (long ids)."""
    store = await Store.open(db)
    try:
        await store.orders.track("ccnow", "default", [(i, None) for i in CCNOW], 1e9)
        await store.orders.track("ccv", "default", [(i, f"R-{i[-2:]}") for i in CCV], 1e9)
    finally:
        await store.close()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("UPDATE orders SET status = 'pending' WHERE order_id LIKE '396-10-000%'")
        conn.execute(
            "UPDATE orders SET status = 'AwaitingPayment', last_changed = 1e9 "
            "WHERE order_id LIKE '%00000000000_'"
        )
    finally:
        conn.close()


class _Out(io.StringIO):
    """Standard output that notes, at each flush, how many statements the store had run."""

    def __init__(self, statements: list[str]) -> None:
        super().__init__()
        self.statements = statements
        self.flushed: list[tuple[int, int]] = []  # (statements run, lines written)

    def flush(self) -> None:
        self.flushed.append((len(self.statements), self.getvalue().count("\n")))
        super().flush()


async def _printed(db: Path, *, json_out: bool, page: int) -> tuple[_Out, list[str]]:
    store = await Store.open(db, readonly=True)
    statements: list[str] = []
    out = _Out(statements)
    try:
        await store.conn.set_trace_callback(statements.append)
        with contextlib.redirect_stdout(out):
            await print_orders(store, None, None, json_out=json_out, watched={}, now=1e9, page=page)
    finally:
        await store.close()
    return out, statements


async def test_each_page_is_printed_before_the_next_is_read(tmp_path: Path) -> None:
    db = tmp_path / "reconciler.db"
    await _store(db)
    out, statements = await _printed(db, json_out=False, page=10)
    # Three statements of at most 10 orders each, and each page out before the next one read.
    assert len(statements) == 3 and all(s.endswith("LIMIT 10") for s in statements), statements
    assert out.flushed[:3] == [(1, 11), (2, 21), (3, 26)], out.flushed
    lines = out.getvalue().splitlines()
    assert len(lines) == 26 and lines[0].split() == [
        "SOURCE",
        "ACCOUNT",
        "ORDER_ID",
        "STATUS",
        "EXTERNAL_REFERENCE",
        "LAST_CHANGED",
    ]
    # Columns as wide as their widest cell so far: the CCV page widens the id column, the
    # lines above keep theirs.
    assert lines[1].split() == ["ccnow", "default", CCNOW[0], "pending", "-", "-"]
    status_at = len("SOURCE  ACCOUNT  ") + len(CCNOW[0]) + 2
    assert lines[1].index("pending") == lines[0].index("STATUS") == status_at
    ccv = lines[13]
    assert ccv.split() == [
        "ccv",
        "default",
        CCV[0],
        "AwaitingPayment",
        "R-00",
        "2001-09-09T01:46:40.000Z",
    ]
    assert lines[21].index("AwaitingPayment") == lines[13].index("AwaitingPayment") > 36
    # An exact multiple of the page: one more statement finds nothing, no empty page. Each
    # order is an object of 14 lines (its 12 fields), 13 line ends and the one after its comma.
    out, statements = await _printed(db, json_out=True, page=5)
    assert len(statements) == 6 and out.flushed[:5] == [(n, n * 70) for n in range(1, 6)]


async def test_the_json_document_is_the_one_it_always_was(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    db = tmp_path / "reconciler.db"
    empty = await call_cli("--config", cfg, "orders", "--json")
    assert (empty.code, empty.stdout) == (0, "[]\n"), empty.stderr
    await _store(db)
    with environ(cli_env()):
        config = load_config(cfg)
    store = await Store.open(db, readonly=True)
    try:
        states = await store.orders.snapshot()
        pending = await store.orders.snapshot("ccnow", "pending")
    finally:
        await store.close()
    watched = config.watch_settled()
    # The text the whole list made, json.dumps at once (the command before its pages).
    whole = [order_json(s, watched=watched, now=0.0) for s in states]
    listed = await call_cli("--config", cfg, "orders", "--json")
    assert listed.code == 0, listed.stderr
    assert listed.stdout == json.dumps(whole, indent=1, ensure_ascii=False) + "\n"
    assert [o["order_id"] for o in json.loads(listed.stdout)] == CCNOW + CCV
    assert [s.key.order_id for s in pending] == CCNOW[:10]
    filtered = await call_cli(
        "--config", cfg, "orders", "--json", "--source", "ccnow", "--status", "pending"
    )
    assert [o["order_id"] for o in json.loads(filtered.stdout)] == CCNOW[:10]


async def test_a_page_is_read_along_the_orders_key(tmp_path: Path) -> None:
    db = tmp_path / "reconciler.db"
    await _store(db)
    store = await Store.open(db, readonly=True)
    statements: list[str] = []
    try:
        await store.conn.set_trace_callback(statements.append)
        found = [
            [s.key.order_id for s in p] async for p in order_pages.pages(store, None, None, page=7)
        ]
        assert found == [(CCNOW + CCV)[n : n + 7] for n in range(0, 25, 7)]
        ccv = [
            s.key.order_id async for p in order_pages.pages(store, "ccv", None, page=4) for s in p
        ]
        assert ccv == CCV
        plans = {}
        for sql in set(statements):
            rows = await store.conn.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}")
            plans[sql] = [r[3] for r in rows]
    finally:
        await store.close()
    for plan in plans.values():
        # No sort of the whole snapshot for a page; a later page starts at its key.
        assert not [d for d in plan if "TEMP B-TREE" in d], plan
    after = [p for sql, p in plans.items() if "(source, account, order_id) >" in sql]
    assert after and all(
        any("INDEX sqlite_autoindex_orders_1 ((source,account,order_id)>(?,?,?))" in d for d in p)
        for p in after
    ), after
