"""A real daemon killed (SIGKILL) right after it answered a signed CCV notification 202, before
the debounce let its check run: the next `reconciler catch-up` asks that order first and the
notification is settled. The call was kept in the store only when its check started, so the
kill lost it for good (CCV calls once), and the catch-up, which skips end states, never asked
the order CCV had refunded."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.conftest import call_cli, cli_env, daemon, free_port, poll_until, write_config
from tests.fake_providers import FakeCCV
from tests.server.test_api import RECEIVER_SECRET
from tests.writes.test_submit_crash import listening

REFUNDED = "d4e5f6a7-0000-4000-8000-0000000000a1"
OTHERS = ["d4e5f6a7-0000-4000-8000-0000000000a2", "d4e5f6a7-0000-4000-8000-0000000000a3"]


def log_lines(tmp_path: Path) -> list[dict[str, Any]]:
    text = (tmp_path / "daemon.log").read_text()
    return [json.loads(line.lstrip("<0123456789>")) for line in text.splitlines() if line]


def logged(tmp_path: Path, message: str) -> bool:
    return any(x.get("message") == message for x in log_lines(tmp_path))


def read(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_a_notification_answered_202_survives_a_kill_before_its_check(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    port = free_port()
    fake_ccv.orders = {REFUNDED: "Completed", **dict.fromkeys(OTHERS, "New")}
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\n',
        extra=(
            f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
            # A call within 10 minutes of the order's last check waits for its end.
            f'secret = "{RECEIVER_SECRET}"\ndebounce = "10m"\n'
        ),
    )
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccv", REFUNDED, *OTHERS)).code == 0
    made = await call_cli("--config", cfg, "notification-url", "ccv", "--order", REFUNDED)
    url = f"http://127.0.0.1:{port}{urlsplit(made.stdout.strip()).path}"
    async with daemon(cfg, cli_env()) as proc, aiohttp.ClientSession() as http:
        await listening(port)
        await poll_until(lambda: logged(tmp_path, "daemon.ready"), 90, "daemon.ready")
        async with http.post(url) as first:  # checked at once: Completed, an end state
            assert first.status == 202
        await poll_until(lambda: logged(tmp_path, "notification.confirmed"), 60, "its check")
        assert read(db, "SELECT order_id FROM notified_orders") == []
        asked = len(fake_ccv.requests_for(REFUNDED))

        fake_ccv.orders[REFUNDED] = "Canceled"  # refunded: CCV calls once more
        async with http.post(url) as second:
            assert second.status == 202
        proc.kill()  # before the debounce (10 minutes) let its check run
        await proc.wait()
    assert len(fake_ccv.requests_for(REFUNDED)) == asked  # its check never ran
    assert read(db, "SELECT order_id FROM notified_orders") == [(REFUNDED,)]

    before = len(fake_ccv.requests)
    caught_up = await call_cli("--config", cfg, "catch-up")
    assert caught_up.code == 0, caught_up.stderr
    assert fake_ccv.requests[before].order_id == REFUNDED  # asked first
    status = "SELECT status FROM orders WHERE order_id = ?"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute(status, (REFUNDED,)).fetchall() == [("Canceled",)]
    finally:
        conn.close()
    assert read(db, "SELECT order_id FROM notified_orders") == []  # settled
