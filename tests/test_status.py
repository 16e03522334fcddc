"""`reconciler status [--json]`: health of accounts, orders by status, sinks, the store; read-only,
so it works beside a running daemon."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import cli_env, daemon, read_events, run_cli, write_config
from tests.fake_providers import FakeCCNow, FakeCCV
from tests.notify_socket import NotifySocket

CCV_IDS = [f"5a6b7c8d-0000-4000-8000-00000000000{n}" for n in range(1, 4)]


async def test_status_shows_accounts_orders_sinks_and_the_store(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    fake_ccv.orders = {CCV_IDS[0]: "New", CCV_IDS[1]: "New", CCV_IDS[2]: "FulfillmentDone"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    fresh = await run_cli("--config", cfg, "status", "--json")
    assert fresh.code == 0, fresh.stderr
    assert json.loads(fresh.stdout)["store"]["exists"] is False
    assert not (tmp_path / "reconciler.db").exists()  # status never creates the store

    assert (await run_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    # CCNow refuses the password: that account fails, CCV answers.
    caught = await run_cli(
        "--config", cfg, "catch-up", env=cli_env(RECONCILER_CCNOW_PASSWORD="wrong")
    )
    assert caught.code == 75
    failed_at = next(e["time"] for e in read_events(tmp_path) if e["type"] == "source.failed")
    # One event stays pending for the jsonl sink, one is dead-lettered.
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        conn.execute(
            "UPDATE deliveries SET state = 'pending' WHERE sink = 'jsonl' AND event_seq = 1"
        )
        conn.execute("UPDATE deliveries SET state = 'dead' WHERE sink = 'jsonl' AND event_seq = 2")
    conn.close()

    result = await run_cli("--config", cfg, "status", "--json")
    assert result.code == 0, result.stderr
    status = json.loads(result.stdout)
    ccv, ccnow = status["accounts"]
    assert (ccv["source"], ccv["account"], ccv["health"]) == ("ccv", "default", "ok")
    assert ccv["last_success"] is not None and ccv["failing_since"] is None
    assert ccv["followed"] == 3 and ccv["due"] == 0
    assert ccv["orders"] == [
        {"status": "FulfillmentDone", "count": 1},
        {"status": "New", "count": 2},
    ]
    assert (ccnow["source"], ccnow["health"]) == ("ccnow", "failing")
    assert ccnow["failing_since"] == failed_at
    assert ccnow["last_error"]
    assert status["sinks"] == [
        {"name": "log", "backlog": 0, "dead": 0, "disabled": None},
        {"name": "jsonl", "backlog": 1, "dead": 1, "disabled": None},
    ]
    store = status["store"]
    assert store["path"] == str(tmp_path / "reconciler.db") and store["exists"] is True
    assert store["size_bytes"] > 0 and store["free_bytes"] > 0
    assert store["last_failure"] is None

    text = await run_cli("--config", cfg, "status")
    assert text.code == 0
    lines = text.stdout.splitlines()
    head = next(line for line in lines if line.startswith("ACCOUNT") and "HEALTH" in line)
    row = next(line for line in lines if line.startswith("ccnow/default"))
    assert row.index("failing") == head.index("HEALTH")  # aligned columns
    assert row.index(failed_at[:19]) == head.index("FAILING SINCE")
    assert any(line.split() == ["jsonl", "1", "1", "-"] for line in lines)
    assert any(line.split()[:2] == ["path", str(tmp_path / "reconciler.db")] for line in lines)


async def test_status_works_while_the_daemon_runs(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await run_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    with NotifySocket.at_path(tmp_path / "notify.sock") as sock:
        async with daemon(cfg, cli_env(**sock.env())):
            await sock.wait_for_async("READY", "1", timeout_s=20)
            result = await run_cli("--config", cfg, "status", "--json")
    assert result.code == 0, result.stderr
    (ccv,) = json.loads(result.stdout)["accounts"]
    assert ccv["followed"] == 3
