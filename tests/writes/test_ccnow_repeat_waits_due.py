"""The same request again (the same line, fields or idempotency key) of a command queued with
its next attempt ahead (a Retry-After, a maintenance, a refusal naming no field) reports it as
it is and posts it only once it is due: it was posted again at once, each time, four posts in a
second against `429 Retry-After: 600`. Each answer is sent by a fake on 127.0.0.1."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from reconciler.json_text import iso_time
from tests.conftest import write_config
from tests.fake_ccv_writes import FakeCCVWrites
from tests.fake_providers import FakeCCNow, Reply
from tests.server.test_api import serve_api
from tests.writes.test_ccnow_actions import ARGS, WORD, A, ccnow, query

RATE_LIMIT = Reply(429, "slow down", headers={"Retry-After": "600"})
CASES = {
    "ship-429": ("ship", RATE_LIMIT, "http 429"),
    "adjust-429": ("adjust", RATE_LIMIT, "http 429"),
    "ship-maintenance": (
        "ship",
        Reply(200, "error_message system down for maintenance\n"),
        "error_message system down for maintenance",
    ),
    # Rule 3: words naming no field decide nothing; sent again when due.
    "adjust-rule-3": (
        "adjust",
        Reply(200, "error_message Discount exceeds order total\n"),
        "error_message Discount exceeds order total",
    ),
}


def action_posts(fake: FakeCCNow) -> int:
    return len([r for r in fake.requests if r.form.get("x_action_1", "query") != "query"])


@pytest.mark.parametrize(("action", "reply", "answer"), list(CASES.values()), ids=list(CASES))
async def test_the_same_line_again_reports_a_queued_command_and_posts_it_only_when_due(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, reply: Reply, answer: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [reply]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    first = await ccnow(cfg, action, A, *ARGS[action])
    assert first.code == 75, first.stdout + first.stderr
    [(state, said, at)] = query(tmp_path, "SELECT state, answer, next_attempt_at FROM commands")
    assert (state, said) == ("queued", answer) and at > time.time()
    for _ in range(2):
        again = await ccnow(cfg, action, A, *ARGS[action])
        assert again.code == 75, again.stdout + again.stderr
        assert again.stdout == (
            f"{A} {WORD[action]} queued: {answer} (command 1, not posted before "
            f"{iso_time(at)}) (made before with this key)\n"
        )
    assert action_posts(fake_ccnow) == 1
    assert query(tmp_path, "SELECT state, next_attempt_at FROM commands") == [("queued", at)]
    # Once due, the same line sends it.
    query_update(tmp_path, time.time() - 1)
    due = await ccnow(cfg, action, A, *ARGS[action])
    assert due.code == 0, due.stdout + due.stderr
    assert action_posts(fake_ccnow) == 2
    assert query(tmp_path, "SELECT state FROM commands") == [("succeeded",)]


def query_update(tmp_path: Path, at: float) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute("UPDATE commands SET next_attempt_at = ?", (at,))


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": A, "action": "ship"},
        {"order_id": A, "action": "adjust", "amount": "4.00", "idempotency_key": "ra-1"},
    ],
    ids=["same-fields", "same-key"],
)
async def test_the_same_request_again_through_the_api_waits_for_the_retry_after(
    tmp_path: Path, fake_ccnow: FakeCCNow, body: dict[str, str]
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [RATE_LIMIT]
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, ccnow=fake_ccnow) as served:
        status, acted, _ = await served.call("POST", "/api/v1/ccnow/actions", body=body)
        assert status == 202 and acted["state"] == "queued", acted
        [(at,)] = served.rows("SELECT next_attempt_at FROM commands")
        for _ in range(3):
            status, again, _ = await served.call("POST", "/api/v1/ccnow/actions", body=body)
            assert status == 202, again
            assert (again["id"], again["state"], again["made_before"]) == (
                acted["id"],
                "queued",
                True,
            )
            assert again["answer"] == "http 429"
            assert again["next_attempt_at"] == iso_time(at)
        assert action_posts(fake_ccnow) == 1


async def test_dry_run_leaves_out_a_command_made_before_that_is_not_due(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # As the real run: it is not posted before its Retry-After asks.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [RATE_LIMIT]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "ship", A)).code == 75
    dry = await ccnow(cfg, "ship", A, "--dry-run")
    assert dry.code == 75, dry.stdout + dry.stderr
    assert dry.stdout == ""
    assert f"{A} ship left out: made before with this key (command 1, queued: http 429)" in (
        dry.stderr
    )
    query_update(tmp_path, time.time() - 1)
    due = await ccnow(cfg, "ship", A, "--dry-run")
    assert due.code == 0, due.stdout + due.stderr
    assert "x_action_1=ship" in due.stdout
    assert action_posts(fake_ccnow) == 1
