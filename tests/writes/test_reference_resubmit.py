"""A reference submitted through reconciler whose order CCV then ended `Canceled` is free to
submit again (the integrator's way to resubmit): the new submit is recorded and sent once, its
answer names the earlier carrier. `Failed` (a CCV employee may still complete it), any other
status or none read yet keeps the reference held, as a `sending` or `uncertain` submit does;
two submits of a freed reference at once make one CCV post. CCV's status is compared without
its case. The answer's list of other carriers is bounded (`Reconciler-Also-Carried-Count`), so
`ccv submit` through the daemon reads a made order as made, however many carry it. Real
SQLite, real HTTP against the daemon's API and a fake CCV on 127.0.0.1, the CLI in this
process; a store of the previous schema is upgraded with its submissions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.store.migrations import MIGRATIONS, statements
from reconciler.writes.submit_refused import (
    ALSO_CARRIED_COUNT_HEADER,
    ALSO_CARRIED_HEADER,
    also_carried_from,
)
from tests.conftest import call_cli, daemon_here, free_port, write_config
from tests.fake_ccv_writes import DROP, FakeCCVWrites, submit_body
from tests.fake_providers import Reply
from tests.server.test_api import Api, api_toml, serve_api
from tests.writes.test_reference_submit_race import O1, ended_as, track
from tests.writes.test_submit_crash import listening

SUBMIT = "/api/v1/ccv/orders"


async def submitted(api: Api, ref: str) -> str:
    status, answered, _ = await api.call("POST", SUBMIT, body=submit_body(externalReference=ref))
    assert status == 201, answered
    return str(answered["orderId"])


@pytest.mark.parametrize("status", ["Canceled", "canceled", "CANCELED"])
async def test_a_submit_whose_order_ccv_canceled_frees_its_reference(
    api: Api, fake: FakeCCVWrites, status: str
) -> None:
    first = await submitted(api, "again-1")
    await ended_as(api, fake, first, status)
    code, answered, headers = await api.call(
        "POST", SUBMIT, body=submit_body(externalReference="again-1")
    )
    assert code == 201, answered
    second = answered["orderId"]
    assert second != first and len(fake.submits) == 2
    assert also_carried_from(headers) == [first]
    assert sorted(api.rows("SELECT state, order_id FROM submissions")) == sorted(
        [("succeeded", first), ("succeeded", second)]
    )
    # The new one holds the reference now: a third submit is refused, nothing sent.
    code, document, _ = await api.call(
        "POST", SUBMIT, body=submit_body(externalReference="again-1")
    )
    assert (code, document["order_id"]) == (409, second), document
    assert len(fake.submits) == 2


@pytest.mark.parametrize("status", ["Failed", "FAILED", "Completed", "Processing", None])
async def test_a_submit_whose_order_is_not_canceled_still_holds_its_reference(
    api: Api, fake: FakeCCVWrites, status: str | None
) -> None:
    first = await submitted(api, "held-1")
    if status is not None:  # None: CCV's status of it not read yet
        await ended_as(api, fake, first, status)
    code, document, _ = await api.call("POST", SUBMIT, body=submit_body(externalReference="held-1"))
    assert code == 409, document
    assert (document["state"], document["order_id"]) == ("succeeded", first), document
    assert len(fake.submits) == 1
    assert api.rows("SELECT count(*) FROM submissions") == [(1,)]


async def test_a_resolved_submit_whose_order_ccv_canceled_frees_its_reference(
    api: Api, fake: FakeCCVWrites
) -> None:
    fake.submit_replies.append(Reply(DROP, ""))
    code, document, _ = await api.call("POST", SUBMIT, body=submit_body(externalReference="lost-2"))
    assert (code, document["state"]) == (502, "uncertain"), document
    # Uncertain: never sent again.
    code, document, _ = await api.call("POST", SUBMIT, body=submit_body(externalReference="lost-2"))
    assert (code, document["state"]) == (409, "uncertain"), document
    assert (await api.call("POST", "/api/v1/orders", body=track(O1, "lost-2")))[0] == 201
    await ended_as(api, fake, O1, "Canceled")
    code, answered, headers = await api.call(
        "POST", SUBMIT, body=submit_body(externalReference="lost-2")
    )
    assert code == 201, answered
    assert also_carried_from(headers) == [O1]
    assert len(fake.submits) == 2


async def test_two_submits_of_a_freed_reference_at_once_make_one_post(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    async with serve_api(tmp_path, fake, ccv_timeout="60s") as api:
        await two_at_once(api, fake)


async def two_at_once(api: Api, fake: FakeCCVWrites) -> None:
    first = await submitted(api, "twice-1")
    await ended_as(api, fake, first, "Canceled")
    fake.submit_hold = asyncio.Event()
    body = submit_body(externalReference="twice-1")
    calls = [asyncio.ensure_future(api.call("POST", SUBMIT, body=body)) for _ in range(2)]
    # One is at CCV, held; the other is told what became of it (a duplicate waits for it).
    await fake.wait_until(lambda: len(fake.submits) == 2)
    fake.submit_hold.set()
    codes = sorted([(await c)[0] for c in calls])
    assert codes == [201, 409]
    assert len(fake.submits) == 2  # the first submit's and one of these
    assert api.rows("SELECT count(*) FROM submissions WHERE state = 'succeeded'") == [(2,)]


async def test_two_claims_of_a_freed_reference_at_once_make_one_submission(
    api: Api, fake: FakeCCVWrites
) -> None:
    first = await submitted(api, "twice-2")
    await ended_as(api, fake, first, "Canceled")
    store = api.rt.store
    claims = [subs.record(store, "default", "twice-2", time.time()) for _ in range(2)]
    outcomes = await asyncio.gather(*claims, return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["SubmissionExists", "int"], outcomes
    assert api.rows("SELECT count(*) FROM submissions WHERE state = 'sending'") == [(1,)]


async def test_ccv_submit_again_after_ccv_canceled_its_order(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="shop-9")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 0, result.stderr
    first = result.stdout.strip()
    fake.orders[first] = "Canceled"
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccv")).code == 0
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 0, result.stderr
    second = result.stdout.strip()
    assert second and second != first
    warned = [line for line in result.stderr.splitlines() if line.startswith("reconciler: ")]
    assert warned == [
        f"reconciler: warning: reference shop-9 is carried by order {first} too, which "
        f"reconciler follows: order {second} is tracked with it"
    ], result.stderr
    assert len(fake.submits) == 2


async def test_ccv_submit_through_the_daemon_with_400_canceled_carriers_is_made(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    ids = [f"0b7c2a4e-8f0b-4d57-9a8e-{n:012d}" for n in range(400)]
    listing = tmp_path / "orders.csv"
    listing.write_text("".join(f"{oid},many-1\n" for oid in ids))
    assert (await call_cli("--config", cfg, "track", "ccv", "--from-file", str(listing))).code == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute("UPDATE orders SET status = 'Canceled', end_state = 1")
    fake.orders.update(dict.fromkeys(ids, "Canceled"))
    async with daemon_here(cfg):
        await listening(port)
        stdin = json.dumps(submit_body(externalReference="many-1")).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 0, result.stderr
    made = result.stdout.strip()
    assert made and made not in ids
    warned = [line for line in result.stderr.splitlines() if line.startswith("reconciler: ")]
    assert warned == [
        f"reconciler: warning: reference many-1 is carried by order {ids[0]} (and 399 more) "
        f"too, which reconciler follows: order {made} is tracked with it"
    ], result.stderr
    assert len(fake.submits) == 1


async def test_the_also_carried_header_is_bounded_and_counts_them_all(
    api: Api, fake: FakeCCVWrites
) -> None:
    ids = [f"0b7c2a4e-8f0b-4d57-9a8e-{n:012d}" for n in range(400)]
    api.rows(
        "INSERT INTO orders (source, account, order_id, status, external_reference, end_state) "
        "SELECT 'ccv', 'default', value, 'Canceled', 'many-2', 1 FROM json_each(?)",
        json.dumps(ids),
    )
    code, answered, headers = await api.call(
        "POST", SUBMIT, body=submit_body(externalReference="many-2")
    )
    assert code == 201, answered
    assert len(headers[ALSO_CARRIED_HEADER]) <= 4096
    named = also_carried_from(headers)
    assert 0 < len(named) < 400 and named == ids[: len(named)]
    assert headers[ALSO_CARRIED_COUNT_HEADER] == "400"


SCHEMA_BEFORE_SUPERSEDED = 26  # the last schema before migration 27 (`superseded_at`)


async def test_a_succeeded_submit_of_the_previous_schema_is_freed_after_the_upgrade(
    tmp_path: Path,
) -> None:
    # Pinned to the schema before migration 27: "one before the current one" already held it
    # once later migrations came, and tested no upgrade of it.
    db = tmp_path / "reconciler.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        for script in MIGRATIONS[:SCHEMA_BEFORE_SUPERSEDED]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {SCHEMA_BEFORE_SUPERSEDED}")
        columns = [r[1] for r in conn.execute("PRAGMA table_info(submissions)")]
        assert "superseded_at" not in columns  # the upgrade adds it
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.executemany(
            "INSERT INTO orders (source, account, order_id, status, external_reference) "
            "VALUES ('ccv', 'default', ?, ?, ?)",
            [("o-1", "Canceled", "R-1"), ("o-2", "Completed", "R-2")],
        )
        conn.executemany(
            "INSERT INTO submissions (account, external_reference, state, order_id, "
            "created_at, closed_at) VALUES ('default', ?, 'succeeded', ?, 1.0, 2.0)",
            [("R-1", "o-1"), ("R-2", "o-2")],
        )
    store = await Store.open(db)
    try:
        assert await subs.record(store, "default", "R-1", time.time())
        with pytest.raises(subs.SubmissionExists):
            await subs.record(store, "default", "R-1", time.time())  # the new one holds it
        with pytest.raises(subs.SubmissionExists):
            await subs.record(store, "default", "R-2", time.time())
    finally:
        await store.close()


async def test_a_notification_of_an_uncertain_resubmit_is_not_taken_for_the_canceled_order(
    api: Api, fake: FakeCCVWrites
) -> None:
    # The notification names the reference only: its one carrier, the canceled order, was taken
    # for the resubmit's, the new order never followed and the resubmit freed again.
    first = await submitted(api, "again-9")
    await ended_as(api, fake, first, "Canceled")
    fake.submit_replies = [Reply(DROP)]
    code, _, _ = await api.call("POST", SUBMIT, body=submit_body(externalReference="again-9"))
    assert code >= 500 or code == 202, code
    assert api.rows("SELECT state FROM submissions WHERE superseded_at IS NULL") == [("uncertain",)]
    await api.daemon.hub.check_ccv_reference("default", "again-9", 0.0)
    live = api.rows("SELECT state, order_id FROM submissions WHERE superseded_at IS NULL")
    assert live == [("resolved", None)], live
    # Still held: the uncertain resubmit was settled as CCV holding an order of it.
    code, document, _ = await api.call(
        "POST", SUBMIT, body=submit_body(externalReference="again-9")
    )
    assert code == 409, document
    assert len(fake.submits) == 2
