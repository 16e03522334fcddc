"""A post turned away with a Retry-After (a 429; a 503 without CCNow's words) stays queued as
long as it asks (its 30 s doubling when longer), an hour at most, as every queued command: it
was due again after 30 s, a rate limit asking 10 minutes met by another post each 30 s. Each
answer is sent by a fake on 127.0.0.1."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from reconciler.json_text import iso_time
from tests.commands.test_status_writes import writes_of
from tests.conftest import write_config
from tests.fake_ccv_writes import FakeCCVWrites
from tests.fake_providers import FakeCCNow, Reply
from tests.server.test_api import serve_api
from tests.writes.test_ccnow_actions import ARGS, A, ccnow, query

# An HTTP date ten minutes after the post, made when it is sent.
IN_TEN_MINUTES = "in ten minutes"

CASES = {
    "adjust-429": ("adjust", Reply(429, "slow down", headers={"Retry-After": "600"}), 600),
    # Not posted again within the post (no retries here), nor for 15 minutes after it.
    "ship-503": ("ship", Reply(503, "busy", headers={"Retry-After": "900"}), 900),
    "track-429-date": (
        "add-tracking",
        Reply(429, "", headers={"Retry-After": IN_TEN_MINUTES}),
        600,
    ),
    "adjust-429-a-day": ("adjust", Reply(429, "", headers={"Retry-After": "86400"}), 3600),
    "adjust-429-short": ("adjust", Reply(429, "", headers={"Retry-After": "5"}), 30),
}


@pytest.mark.parametrize(("action", "reply", "wait"), list(CASES.values()), ids=list(CASES))
async def test_a_post_turned_away_waits_in_the_queue_for_its_retry_after(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, reply: Reply, wait: float
) -> None:
    fake_ccnow.orders = {A: "pending"}
    date = reply.headers["Retry-After"] == IN_TEN_MINUTES
    if date:
        ten_minutes = {"Retry-After": formatdate(time.time() + 600, usegmt=True)}
        reply = Reply(reply.status, reply.body, headers=ten_minutes)
    fake_ccnow.script = [reply]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    cfg.write_text(cfg.read_text().replace("retries = 1", "retries = 0"))
    before = time.time()
    result = await ccnow(cfg, action, A, *ARGS[action])
    after = time.time()
    assert result.code == 75, result.stdout + result.stderr
    assert len(fake_ccnow.requests) == 1
    [(state, answer, at)] = query(tmp_path, "SELECT state, answer, next_attempt_at FROM commands")
    assert (state, answer) == ("queued", f"http {reply.status}")
    slack = 1.0 if date else 0.0  # an HTTP date says whole seconds
    assert before + wait - slack <= at <= after + wait + slack


@pytest.mark.parametrize("action", ["ship", "cancel", "add-tracking"])
async def test_a_retry_after_longer_than_a_retry_may_wait_ends_the_post(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str
) -> None:
    # Its retries within the post (3 here) waited 30 s each, however long it asked: a rate limit
    # asking 10 minutes met three more posts, 30 s apart, before the queue honoured it.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(429, "slow down", headers={"Retry-After": "600"})]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    cfg.write_text(cfg.read_text().replace("retries = 1", "retries = 3"))
    before = time.time()
    result = await ccnow(cfg, action, A, *ARGS[action])
    after = time.time()
    assert result.code == 75, result.stdout + result.stderr
    assert len(fake_ccnow.requests) == 1
    [(state, at)] = query(tmp_path, "SELECT state, next_attempt_at FROM commands")
    assert state == "queued" and before + 600 <= at <= after + 600
    assert after - before < 10  # no retry's wait within the post


async def test_a_retry_after_a_retry_may_wait_is_waited_within_the_post(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Up to 30 s it asks is waited, and the post tried again then, as before.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(429, "slow down", headers={"Retry-After": "1"})]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "ship", A, *ARGS["ship"])
    assert result.code == 0, result.stdout + result.stderr
    posts = [r for r in fake_ccnow.requests if "x_action_1" in r.form]
    assert len(posts) == 2
    assert query(tmp_path, "SELECT state FROM commands") == [("succeeded",)]


async def test_the_api_shows_when_a_queued_action_is_posted_next(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Queued for 10 minutes by a rate limit, it showed only `queued`: when it would go was
    # nowhere to be seen, an hour's wait as good as stuck.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(429, "slow down", headers={"Retry-After": "600"})]
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, ccnow=fake_ccnow) as served:
        before = time.time()
        status, acted, _ = await served.call(
            "POST", "/api/v1/ccnow/actions", body={"order_id": A, "action": "ship"}
        )
        after = time.time()
        assert status == 202 and acted["state"] == "queued", acted
        [(at,)] = served.rows("SELECT next_attempt_at FROM commands")
        assert before + 600 <= at <= after + 600
        assert acted["next_attempt_at"] == iso_time(at)
        status, found, _ = await served.call("GET", f"/api/v1/ccnow/actions/{acted['id']}")
        assert status == 200 and found["next_attempt_at"] == iso_time(at)
        assert acted["commands"][0]["next_attempt_at"] == iso_time(at)


async def test_an_action_not_queued_has_no_next_attempt(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, ccnow=fake_ccnow) as served:
        status, acted, _ = await served.call(
            "POST", "/api/v1/ccnow/actions", body={"order_id": A, "action": "ship"}
        )
        assert status == 202 and acted["state"] == "done", acted
        assert acted["next_attempt_at"] is None


async def test_status_shows_when_queued_actions_are_posted_next(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # `status` counted it queued, "the daemon sends them": not that it would be 10 minutes.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(429, "slow down", headers={"Retry-After": "600"})]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "ship", A, *ARGS["ship"])).code == 75
    [(at,)] = query(tmp_path, "SELECT next_attempt_at FROM commands")
    entry, row = await writes_of(cfg, "ccnow/default")
    assert (entry["queued_writes"], entry["queued_next_at"]) == (1, iso_time(at))
    assert row[3] == "1" and row[4].endswith(f", none before {iso_time(at)}"), row


async def test_status_shows_no_next_time_when_a_queued_action_is_due(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(429, "slow down", headers={"Retry-After": "600"})]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "ship", A, *ARGS["ship"])).code == 75
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute("UPDATE commands SET next_attempt_at = ?", (time.time() - 1,))
    entry, row = await writes_of(cfg, "ccnow/default")
    assert (entry["queued_writes"], entry["queued_next_at"]) == (1, None)
    assert "none before" not in row[4], row


async def test_the_api_shows_no_next_attempt_for_a_queued_action_already_due(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A queued command whose time had come showed that past time: README says null when due at
    # once, as status's queued_next_at does.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(429, "slow down", headers={"Retry-After": "600"})]
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, ccnow=fake_ccnow) as served:
        status, acted, _ = await served.call(
            "POST", "/api/v1/ccnow/actions", body={"order_id": A, "action": "ship"}
        )
        assert status == 202 and acted["state"] == "queued", acted
        served.rows("UPDATE commands SET next_attempt_at = ?", time.time() - 1)
        status, found, _ = await served.call("GET", f"/api/v1/ccnow/actions/{acted['id']}")
        assert status == 200 and found["state"] == "queued", found
        assert found["next_attempt_at"] is None
