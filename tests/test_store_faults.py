"""The store under faults, on real SQLite files: a corrupt page, another application's database,
a full disk. Each is one line naming the file and exit 74, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from reconciler.store import Store
from tests.conftest import Result, cli_env, daemon, run_cli, write_config
from tests.fake_providers import FakeCCV
from tests.notify_socket import NotifySocket

ORDERS = 3000


def order_id(n: int) -> str:
    return f"0b7c1f3e-0000-4000-8000-{n:012d}"


async def make_store(path: Path, orders: int = ORDERS) -> None:
    """A real store following `orders` CCV orders."""
    store = await Store.open(path)
    try:
        await store.track("ccv", "default", [(order_id(n), None) for n in range(orders)], 1.0)
    finally:
        await store.close()


def corrupt_middle_page(path: Path) -> str:
    """Write garbage over the middle leaf page of the orders table; return an order id whose
    row was on it."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = conn.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = 'orders' AND pagetype = 'leaf' "
            "ORDER BY path"
        ).fetchall()
    middle = len(leaves) // 2
    first_row = sum(ncell for _, ncell in leaves[:middle])  # rows went in in id order
    pageno = leaves[middle][0]
    with path.open("r+b") as f:
        f.seek((pageno - 1) * page_size)
        f.write(bytes((n * 7 + 13) % 256 for n in range(page_size)))
    return order_id(first_row + 1)


def assert_one_line(result: Result, code: int, *words: str) -> None:
    assert result.code == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


async def test_a_corrupt_page_is_exit_74_with_one_line_naming_the_file(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    await make_store(db)
    on_page = corrupt_middle_page(db)
    for command in (["orders"], ["track", "ccv", on_page], ["catch-up"]):
        result = await run_cli("--config", cfg, *command)
        assert_one_line(result, 74, str(db), "malformed")


async def test_the_daemon_refuses_a_corrupt_store_before_ready(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    await make_store(db)
    corrupt_middle_page(db)
    with NotifySocket.at_path(tmp_path / "notify.sock") as sock:
        async with daemon(cfg, cli_env(**sock.env())) as proc:
            code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 74
        with contextlib.suppress(TimeoutError):
            while True:
                sock.receive(0)  # keeps what it got in sock.received
        assert not any(d.fields.get("READY") == "1" for d in sock.received)
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log
    assert len(log.strip().splitlines()) == 1, log
    assert str(db) in log and ("damaged" in log or "malformed" in log)


async def test_another_applications_database_is_refused_and_left_as_it_was(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
        conn.commit()
    db.chmod(0o644)
    before = db.read_bytes()
    for command in (["track", "ccv", order_id(1)], ["catch-up"], ["orders"]):
        result = await run_cli("--config", cfg, *command)
        assert_one_line(result, 74, str(db), "another application", "invoices")
    assert db.read_bytes() == before
    assert db.stat().st_mode & 0o777 == 0o644
    assert not db.with_name(db.name + "-wal").exists()
