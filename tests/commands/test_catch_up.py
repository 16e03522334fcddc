"""`reconciler catch-up` end to end: the CLI (in-process, see call_cli) against loopback fakes.
The pass rules behind it are tested with fake clients in tests/poller/."""

from __future__ import annotations

import asyncio
import json
import platform
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, read_events, write_config
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV, Reply

CCV_IDS = [f"0b7c1f3e-0000-4000-8000-{n:012d}" for n in range(1, 6)]


def kinds(events: list[dict[str, object]]) -> list[tuple[object, object]]:
    return sorted((e["type"], e.get("subject")) for e in events)


async def test_discovery_then_transitions_then_silence(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "AwaitingPayment")
    fake_ccv.refs = {CCV_IDS[0]: "ref-1"}
    fake_ccnow.orders = {"396-10-1142": "pending", "397-10-1159": "pending"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS[1:])).code == 0
    assert (await call_cli("--config", cfg, "track", "ccv", CCV_IDS[0], "--ref", "ref-1")).code == 0

    first = await call_cli("--config", cfg, "catch-up")
    assert first.code == 0, first.stderr
    events = read_events(tmp_path)
    assert kinds(events) == sorted(
        [("order.discovered", i) for i in CCV_IDS]
        + [("order.discovered", "396-10-1142"), ("order.discovered", "397-10-1159")]
    )
    assert all(e["data"]["via"] == "catch-up" for e in events)
    by_subject = {e["subject"]: e for e in events}
    assert by_subject[CCV_IDS[0]]["data"]["external_reference"] == "ref-1"

    # Changes on both sides: one CCV order completes, one CCNow order leaves the pending list.
    fake_ccv.orders[CCV_IDS[2]] = "Completed"
    fake_ccnow.orders["396-10-1142"] = "mark_shipped"
    second = await call_cli("--config", cfg, "catch-up")
    assert second.code == 0, second.stderr
    new = read_events(tmp_path)[len(events) :]
    assert kinds(new) == sorted(
        [("order.status_changed", "396-10-1142"), ("order.status_changed", CCV_IDS[2])]
    )
    changed = {e["subject"]: e["data"] for e in new}
    assert changed[CCV_IDS[2]]["previous_status"] == "AwaitingPayment"
    assert changed[CCV_IDS[2]]["end_state"] is True
    assert changed["396-10-1142"]["status"] == "mark_shipped"

    # Nothing changed: nothing emitted; the completed order is not polled again.
    before = len(fake_ccv.requests_for(CCV_IDS[2]))
    third = await call_cli("--config", cfg, "catch-up")
    assert third.code == 0
    assert len(read_events(tmp_path)) == len(events) + 2
    assert len(fake_ccv.requests_for(CCV_IDS[2])) == before

    listing = await call_cli("--config", cfg, "orders", "--json")
    rows = {r["order_id"]: r for r in json.loads(listing.stdout)}
    assert rows[CCV_IDS[2]]["status"] == "Completed" and rows[CCV_IDS[2]]["end_state"] is True
    assert rows["396-10-1142"]["status"] == "mark_shipped"


async def test_bad_ccnow_login_is_a_source_failure(tmp_path: Path, fake_ccnow: FakeCCNow) -> None:
    fake_ccnow.orders = {"396-10-1142": "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await call_cli(
        "--config", cfg, "catch-up", env=cli_env(RECONCILER_CCNOW_PASSWORD="wrong-password-123")
    )
    assert result.code == 75
    assert [e["type"] for e in read_events(tmp_path)] == ["source.failed"]


async def test_ccv_401_costs_one_request_and_one_source_failed(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    ids = [f"c0ffee00-0000-4000-8000-{n:012d}" for n in range(200)]
    fake_ccv.orders = dict.fromkeys(ids, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    id_file = tmp_path / "ids.txt"
    id_file.write_text("\n".join(ids) + "\n")
    assert (await call_cli("--config", cfg, "track", "ccv", "--from-file", id_file)).code == 0
    result = await call_cli(
        "--config", cfg, "catch-up", env=cli_env(RECONCILER_CCV_API_KEY="t_wrong-key-00000")
    )
    assert result.code == 75
    assert len(fake_ccv.requests) <= 10
    assert [e["type"] for e in read_events(tmp_path)] == ["source.failed"]
    failures = [line for line in result.log_lines() if line["message"] == "source.failed"]
    assert len(failures) == 1


async def test_malformed_ids_exit_65_naming_the_id(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    for bad in ("../etc/passwd", "a b", "x\x01y", "z" * 300):
        result = await call_cli("--config", cfg, "track", "ccv", bad)
        assert result.code == 65
        assert repr(bad)[1:20] in result.stderr
    result = await call_cli("--config", cfg, "track", "ccnow", "12-34")
    assert result.code == 65 and "12-34" in result.stderr
    assert json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout) == []


async def test_no_secret_in_any_output_event_or_database(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    fake_ccnow.orders = {"396-10-1142": "pending"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)
    outputs = [await call_cli("--log-level", "debug", "--config", cfg, "catch-up")]
    fake_ccnow.always = Reply(200, "error_message invalid login\n")
    fake_ccv.always = Reply(401, "")
    outputs.append(await call_cli("--log-level", "debug", "--config", cfg, "catch-up"))
    outputs.append(await call_cli("--config", cfg, "events", "--json"))
    outputs.append(await call_cli("--config", cfg, "check"))
    blobs = [o.stdout + o.stderr for o in outputs]
    for path in tmp_path.iterdir():
        if path.is_file() and not path.name.endswith(".toml"):
            blobs.append(path.read_bytes().decode("latin-1"))
    for secret in (CCV_KEY, CCNOW_PASSWORD):
        assert not any(secret in blob for blob in blobs), secret


async def test_database_is_private_and_versioned(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", CCV_IDS[0])).code == 0
    db = tmp_path / "reconciler.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_summary_counts_every_event_of_concurrent_batches(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    ids = [f"b1b2b3b4-0000-4000-8000-{n:012d}" for n in range(1300)]  # several batches
    fake_ccv.orders = dict.fromkeys(ids, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    await call_cli("--config", cfg, "track", "ccv", "--from-file", tmp_path / "ids.txt")
    result = await call_cli("--config", cfg, "catch-up")
    [done] = [line for line in result.log_lines() if line["message"] == "catch-up.done"]
    assert (done["checked"], done["events"], done["failed"]) == (1300, 1300, 0)
    assert len(read_events(tmp_path)) == 1300


@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64", reason="seccomp filter for x86-64"
)
async def test_catch_up_works_where_io_uring_is_refused(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    # The units' SystemCallFilter refuses io_uring with EPERM; uvloop's libuv, which tries it
    # at start, must fall back to epoll alone.
    pytest.importorskip("uvloop")
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).parents[1] / "no_io_uring.py"),
        "--config",
        str(cfg),
        "catch-up",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert kinds(read_events(tmp_path)) == sorted(("order.discovered", i) for i in CCV_IDS)


async def test_a_catch_up_of_a_source_without_an_account_is_a_usage_error(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # Checking nothing and exiting 0 would tell a script that CCNow was caught up.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    result = await call_cli("--config", cfg, "catch-up", "--source", "ccnow", env=cli_env())
    assert result.code == 2
    assert "no [ccnow] account is configured" in result.stderr
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccv", env=cli_env())).code == 0
