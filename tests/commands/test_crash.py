"""SIGKILL a catch-up in mid-pass, again and again: no transition is lost, none gets two ids;
after a restore from backup no id is given to a different transition."""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import shutil
import signal
import sqlite3
import subprocess
from collections import defaultdict
from pathlib import Path

from tests.conftest import (
    call_cli,
    cli_env,
    daemon,
    poll_until,
    read_events,
    spawn,
    write_config,
)
from tests.fake_providers import FakeCCV, Reply, html_page

LIFECYCLE = [
    "Processing",
    "Incomplete",
    "AwaitingPayment",
    "Screening",
    "New",
    "FulfillmentInProgress",
    "FulfillmentDone",
    "Completed",
]


async def kill_mid_pass(cfg: Path, fake: FakeCCV, after_requests: int) -> int:
    """Run a catch-up and SIGKILL it once the provider has answered `after_requests` more."""
    target = len(fake.requests) + after_requests
    proc = await spawn(
        "--config", cfg, "catch-up", env=cli_env(), stderr=asyncio.subprocess.DEVNULL
    )
    exited = asyncio.ensure_future(proc.wait())
    reached = asyncio.ensure_future(fake.wait_until(lambda: len(fake.requests) >= target, 30))
    await asyncio.wait([exited, reached], return_when=asyncio.FIRST_COMPLETED)
    reached.cancel()
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    return await exited


async def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    rng = random.Random(20261125)
    ids = [f"5eed0000-0000-4000-8000-{n:012d}" for n in range(200)]
    fake_ccv.orders = dict.fromkeys(ids, LIFECYCLE[0])
    cfg = write_config(tmp_path, ccv=fake_ccv)
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    assert (
        await call_cli("--config", cfg, "track", "ccv", "--from-file", tmp_path / "ids.txt")
    ).code == 0

    kills = 0
    for _ in range(6):
        # Move a random third of the orders one step forward, then kill a pass part-way.
        for oid in rng.sample(ids, len(ids) // 3):
            step = LIFECYCLE.index(fake_ccv.orders[oid])
            fake_ccv.orders[oid] = LIFECYCLE[min(step + 1, len(LIFECYCLE) - 1)]
        code = await kill_mid_pass(cfg, fake_ccv, rng.randint(1, len(ids)))
        kills += code == -signal.SIGKILL
    assert kills >= 3, "the passes were too fast to be killed in mid-pass"

    final = await call_cli("--config", cfg, "catch-up")
    assert final.code == 0, final.stderr

    # The snapshot is exactly what the provider says.
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        snapshot = dict(conn.execute("SELECT order_id, status FROM orders"))
        # The history: the status events of each order, in the order they were stored.
        transitions = conn.execute(
            "SELECT order_id, json_extract(body, '$.data.previous_status'), "
            "json_extract(body, '$.data.status'), id FROM events "
            "WHERE type IN ('order.discovered', 'order.status_changed') ORDER BY seq"
        ).fetchall()
    assert snapshot == fake_ccv.orders

    events = read_events(tmp_path)
    emitted_ids = {e["id"] for e in events}
    # Nothing lost: every stored transition reached the sink, and every order's history is
    # a gapless chain from its discovery to its current status.
    assert {t[3] for t in transitions} <= emitted_ids
    chains: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for oid, prev, status, _ in transitions:
        chains[oid].append((prev, status))
    for oid in ids:
        chain = chains[oid]
        assert chain[0][0] is None
        assert all(a[1] == b[0] for a, b in itertools.pairwise(chain))
        assert chain[-1][1] == fake_ccv.orders[oid]

    # No transition with two different event ids (redelivery repeats the same id).
    ids_per_transition: dict[tuple[str, str | None, str], set[str]] = defaultdict(set)
    for e in events:
        data = e["data"]
        ids_per_transition[(e["subject"], data["previous_status"], data["status"])].add(e["id"])
    assert all(len(v) == 1 for v in ids_per_transition.values())


async def backup_store(db: Path, backup: Path) -> None:
    """Back the store up as README says: sqlite3's .backup, safe beside a running writer."""
    await asyncio.to_thread(subprocess.run, ["sqlite3", str(db), f".backup '{backup}'"], check=True)


def restore_store(backup: Path, db: Path) -> None:
    """Put the backup in place as README's restore procedure does (its WAL files removed)."""
    shutil.copyfile(backup, db)
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


async def test_after_a_restore_a_different_transition_never_gets_an_emitted_id(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The README's procedure: back up, go on, restore the backup. The transitions seen after
    # the backup are seen again or not; a different one must not reuse their ids, or a
    # consumer deduplicating on the id (webhook-id) drops it.
    order = "5eed0000-0000-4000-8000-00000000000a"
    db, backup = tmp_path / "reconciler.db", tmp_path / "backup.db"
    fake_ccv.orders = {order: "Processing"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", order)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    await backup_store(db, backup)
    for after_restore in ("AwaitingPayment", "Failed", "AwaitingPayment"):
        fake_ccv.orders[order] = after_restore
        result = await call_cli("--config", cfg, "catch-up")
        assert result.code == 0, result.stderr
        restore_store(backup, db)

    changes = [e for e in read_events(tmp_path) if e["type"] == "order.status_changed"]
    seen = [(e["data"]["status"], e["id"]) for e in changes]
    assert [status for status, _ in seen] == ["AwaitingPayment", "Failed", "AwaitingPayment"]
    # Each pass after a restore is a new epoch: no id comes again, not even for the transition
    # seen again (a repeat is harmless to a consumer; a change it drops as a repeat is not).
    assert len({i for _, i in seen}) == 3


async def test_after_a_restore_an_order_that_came_back_is_not_taken_for_a_repeat(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # A -> B -> A after the backup, then the restore, then B again: the last change sits at
    # the place of the first B in the restored history. With its id, a consumer deduplicating
    # on webhook-id would drop it and believe the order still at A.
    order = "5eed0000-0000-4000-8000-00000000000b"
    db, backup = tmp_path / "reconciler.db", tmp_path / "backup.db"
    fake_ccv.orders = {order: "AwaitingPayment"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", order)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    await backup_store(db, backup)
    for status in ("InProgress", "AwaitingPayment"):
        fake_ccv.orders[order] = status
        assert (await call_cli("--config", cfg, "catch-up")).code == 0
    restore_store(backup, db)
    fake_ccv.orders[order] = "InProgress"
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    assert "store.history_rewound" in result.stderr

    changes = [e for e in read_events(tmp_path) if e["type"] == "order.status_changed"]
    assert [e["data"]["status"] for e in changes] == ["InProgress", "AwaitingPayment", "InProgress"]
    assert changes[2]["id"] not in {changes[0]["id"], changes[1]["id"]}
    # Without a restore nothing changes: the next start neither warns nor changes ids.
    again = await call_cli("--config", cfg, "catch-up")
    assert again.code == 0 and "store.history_rewound" not in again.stderr


async def test_after_a_restore_a_new_source_failure_never_gets_an_emitted_id(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The backup holds an account that never failed. After it, the account fails (401) and
    # recovers; the backup is restored and the account fails again (maintenance): that is a
    # different failure, and a consumer deduplicating on the id would drop it.
    order = "5eed0000-0000-4000-8000-00000000000c"
    db, backup = tmp_path / "reconciler.db", tmp_path / "backup.db"
    fake_ccv.orders = {order: "Processing"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", order)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    await backup_store(db, backup)

    for failure in (Reply(401), html_page(503)):
        fake_ccv.always = failure
        assert (await call_cli("--config", cfg, "catch-up")).code == 75
        fake_ccv.always = None
        assert (await call_cli("--config", cfg, "catch-up")).code == 0
        restore_store(backup, db)

    health = [e for e in read_events(tmp_path) if e["type"].startswith("source.")]
    kinds = [e["type"] for e in health]
    assert kinds == ["source.failed", "source.recovered"] * 2
    assert len({e["id"] for e in health}) == 4, health


async def test_after_a_lost_wal_a_different_transition_never_gets_an_emitted_id(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The daemon emits a transition and is killed; its WAL file is lost with the commit in it.
    order = "5eed0000-0000-4000-8000-00000000000b"
    db = tmp_path / "reconciler.db"
    fake_ccv.orders = {order: "Processing"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra='poll_interval = "1h"')
    assert (await call_cli("--config", cfg, "track", "ccv", order)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0

    def emitted(status: str) -> bool:
        return any(e["data"]["status"] == status for e in read_events(tmp_path))

    for status in ("AwaitingPayment", "Failed"):
        fake_ccv.orders[order] = status
        async with daemon(cfg, cli_env()) as proc:
            await poll_until(functools.partial(emitted, status), 20, f"the {status} event")
            proc.kill()
            await proc.wait()
        for suffix in ("-wal", "-shm"):
            db.with_name(db.name + suffix).unlink(missing_ok=True)

    changes = [e for e in read_events(tmp_path) if e["type"] == "order.status_changed"]
    assert [e["data"]["status"] for e in changes] == ["AwaitingPayment", "Failed"]
    assert changes[0]["id"] != changes[1]["id"]
