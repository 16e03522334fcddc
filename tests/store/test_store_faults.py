"""The store under faults, on real SQLite files: a corrupt page, another application's database,
a full disk. Each is one line naming the file and exit 74, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler import daemon as daemon_module
from reconciler.config import load_config
from reconciler.daemon import Daemon
from reconciler.runtime import Runtime
from reconciler.store import Store, StoreError, order_rows
from reconciler.store.build import check_parameter_limit
from reconciler.store.health import kind_of
from reconciler.store.sql import ROWS_PER_STATEMENT
from reconciler.systemd import Notifier
from tests.conftest import (
    assert_one_line,
    call_cli,
    cli_env,
    daemon_here,
    free_port,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_providers import CCV_KEY, FakeCCV
from tests.notify_socket import NotifySocket

ORDERS = 3000


def order_id(n: int) -> str:
    return f"0b7c1f3e-0000-4000-8000-{n:012d}"


async def make_store(path: Path, orders: int = ORDERS) -> None:
    """A real store following `orders` CCV orders."""
    store = await Store.open(path)
    try:
        await store.orders.track(
            "ccv", "default", [(order_id(n), None) for n in range(orders)], 1.0
        )
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


async def test_a_corrupt_page_is_exit_74_with_one_line_naming_the_file(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    await make_store(db)
    on_page = corrupt_middle_page(db)
    for command in (["orders"], ["track", "ccv", on_page], ["catch-up"], ["status"]):
        result = await call_cli("--config", cfg, *command)
        assert_one_line(result, 74, str(db), "malformed")


async def test_the_daemon_refuses_a_corrupt_store_before_ready(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    await make_store(db)
    corrupt_middle_page(db)
    with NotifySocket.at_path(tmp_path / "notify.sock") as sock:
        async with daemon_here(cfg, cli_env(**sock.env())) as run:
            code = await asyncio.wait_for(run.wait(), 30)
        assert code == 74
        with contextlib.suppress(TimeoutError):
            while True:
                sock.receive(0)  # keeps what it got in sock.received
        assert not any(d.fields.get("READY") == "1" for d in sock.received)
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log
    assert len(log.strip().splitlines()) == 1, log
    assert str(db) in log and ("damaged" in log or "malformed" in log)


@pytest.mark.parametrize(
    "schema",
    [
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)",
        # Tables named like ours, but no reconciler migration made them.
        "CREATE TABLE meta (key TEXT, value TEXT); CREATE TABLE orders (id INTEGER);"
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)",
    ],
)
async def test_another_applications_database_is_refused_and_left_as_it_was(
    tmp_path: Path, fake_ccv: FakeCCV, schema: str
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(schema)
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
        conn.commit()
    db.chmod(0o644)
    before = db.read_bytes()
    for command in (["track", "ccv", order_id(1)], ["catch-up"], ["orders"], ["status"]):
        result = await call_cli("--config", cfg, *command)
        assert_one_line(result, 74, str(db), "another application", "invoices")
    assert db.read_bytes() == before
    assert db.stat().st_mode & 0o777 == 0o644
    assert not db.with_name(db.name + "-wal").exists()


class Records(logging.Handler):
    """Keeps the records of the `reconciler` loggers (however logging was set up before)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, message: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == message]


@contextlib.contextmanager
def recorded() -> Iterator[Records]:
    logger = logging.getLogger("reconciler")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def healthz_until(
    port: int, done: Callable[[int, dict[str, Any]], bool], timeout_s: float = 30.0
) -> tuple[int, dict[str, Any]]:
    """Ask /healthz until `done(status, body)`; return that answer."""
    deadline = time.monotonic() + timeout_s
    while not done(*(answer := await healthz(port))):
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz not as expected within {timeout_s} s: {answer}")
        await asyncio.sleep(0.05)
    return answer


async def test_a_full_disk_is_one_line_when_it_starts_one_when_it_ends_and_in_healthz(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = 200
    fake_ccv.orders = {order_id(n): "New" for n in range(orders)}
    port = free_port()
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='min_interval = "1s"\nmax_interval = "1h"',
        extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n',
    )
    monkeypatch.setenv("RECONCILER_RECEIVER_SECRET", "s" * 32)
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    config = load_config(cfg)
    await make_store(config.store_path, orders)
    stop = asyncio.Event()
    with recorded() as log:
        async with Runtime(config) as rt:
            # SQLITE_FULL without filling a disk: the database may not grow by a page.
            pages = next(iter(await rt.store.conn.execute_fetchall("PRAGMA page_count")))[0]
            await rt.store.conn.execute(f"PRAGMA max_page_count = {pages}")
            rt.store.health.watch(on_corrupt=stop.set)
            serving = asyncio.ensure_future(Daemon(config, rt, Notifier(None)).serve(stop))
            try:
                # The start-up pass and at least two due ticks met the full disk.
                await poll_until(lambda: len(fake_ccv.requests) >= 3 * orders, 30, "three passes")
                status, body = await healthz_until(port, lambda s, b: not b["store"]["healthy"])
                assert status == 503
                assert "full" in body["store"]["error"] and body["store"]["failing_since"]
                assert not read_events(tmp_path)  # nothing half-written reached a sink

                # Space is freed: the next tick's write goes through.
                await rt.store.conn.execute("PRAGMA max_page_count = 1000000")
                await poll_until(lambda: len(read_events(tmp_path)) >= orders, 30, "events")
                # 200 once the pass that wrote them has also recorded the source's success.
                status, body = await healthz_until(port, lambda s, b: s == 200)
                assert body["store"] == {"healthy": True, "failing_since": None, "error": None}
            finally:
                stop.set()
                await serving
            recorded_failure = await rt.store.recorded_failure()
    assert [r.levelno for r in log.messages("store.failing")] == [logging.ERROR]
    assert [r.levelno for r in log.messages("store.recovered")] == [logging.INFO]
    errors = [r for r in log.records if r.exc_info or r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["store.failing"]  # no traceback per tick
    assert recorded_failure is not None and "full" in recorded_failure.error
    shown = await call_cli(
        "--config", cfg, "status", "--json", env=cli_env(RECONCILER_RECEIVER_SECRET="s" * 32)
    )
    assert shown.code == 0, shown.stderr
    last_failure = json.loads(shown.stdout)["store"]["last_failure"]
    assert last_failure["kind"] == "full" and last_failure["until"] >= last_failure["since"]
    # Every order was discovered exactly once: the failed batches left nothing behind.
    assert sorted(e["subject"] for e in read_events(tmp_path)) == sorted(fake_ccv.orders)


async def test_a_corrupt_page_found_while_running_stops_the_daemon_with_74(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As for a store too big for the start-up check: the damage is found by the first pass.
    fake_ccv.orders = {order_id(n): "New" for n in range(ORDERS)}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(cfg)
    await make_store(config.store_path)
    corrupt_middle_page(config.store_path)
    # With `stop`, run_daemon installs no handler: without it, its own was left as this pytest
    # worker's, and a Ctrl-C later ended the worker with 74.
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)]
    with NotifySocket.at_path(tmp_path / "notify.sock") as sock, recorded() as log:
        monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
        with pytest.raises(StoreError, match="malformed") as raised:
            await asyncio.wait_for(
                daemon_module.run_daemon(config, integrity_check_max_bytes=0, stop=asyncio.Event()),
                30,
            )
        with contextlib.suppress(TimeoutError):
            while True:
                sock.receive(0)
    assert str(config.store_path) in str(raised.value)  # cli.py prints it, exit 74
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)] == handlers
    assert not any(d.fields.get("READY") == "1" for d in sock.received)
    errors = [r for r in log.records if r.exc_info or r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["store.failing"]


def test_a_sqlite_build_that_binds_too_few_parameters_is_refused_naming_its_limit() -> None:
    # A build with a lower SQLITE_MAX_VARIABLE_NUMBER would fail a first catch-up's first write
    # of new orders; the store refuses it when it opens, in words an operator can act on.
    if sys.version_info < (3, 11):
        pytest.skip("Connection.setlimit is new in Python 3.11")
    else:
        conn = sqlite3.connect(":memory:")
        widest = order_rows.WIDEST_STATEMENT
        assert order_rows.upsert(ROWS_PER_STATEMENT).count("?") == widest
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, widest - 1)
        with pytest.raises(
            StoreError, match=f"fewer than {widest} parameters.*MAX_VARIABLE_NUMBER"
        ):
            check_parameter_limit(conn)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, widest)
        check_parameter_limit(conn)
        conn.close()


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("database disk image is malformed", "corrupt"),
        ("file is not a database", "corrupt"),
        ("database or disk is full", "full"),
        ("database is locked", "busy"),
        ("disk I/O error", "io"),
    ],
)
def test_an_error_without_a_result_code_is_known_by_its_words(message: str, kind: str) -> None:
    # Python 3.10's sqlite3 errors carry no result code name; SQLite's words say the same.
    assert kind_of(sqlite3.OperationalError(message)) == kind
