"""A Retry-After that comes with CCNow's own words is kept as a turned-away post's is. A 413
whose body is CCNow's lines saying it is down (read as those lines in a 200) was queued for its
30 s doubling whatever the Retry-After asked; a 429 whose lines refuse a command's field was
queued again (and retried within the post) instead of refused as the same lines in a 200 are;
a status read asked while closing a ship, answered 429 with a Retry-After, was retried within
30 s and the ship queued for 30 s. Each answer is sent by a fake CCNow on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import ARGS, WORD, A, B, ccnow, commands, query, tracked
from tests.writes.test_ccnow_answers import action_posts
from tests.writes.test_ccnow_unsettled import action_events

DOWN = "error_message system down for maintenance"


def _retries(cfg: Path, n: int) -> None:
    cfg.write_text(cfg.read_text().replace("retries = 1", f"retries = {n}"))


@pytest.mark.parametrize("status", [413, 414, 200])
@pytest.mark.parametrize("action", ["ship", "add-tracking", "adjust"])
async def test_down_lines_keep_their_retry_after(
    tmp_path: Path, fake_ccnow: FakeCCNow, status: int, action: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(status, DOWN + "\n", headers={"Retry-After": "600"})]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    before = time.time()
    result = await ccnow(cfg, action, A, *ARGS[action])
    after = time.time()
    assert result.code == 75, result.stdout + result.stderr
    assert len(fake_ccnow.requests) == 1
    [(state, answer, at)] = query(tmp_path, "SELECT state, answer, next_attempt_at FROM commands")
    assert (state, answer) == ("queued", DOWN)
    assert before + 600 <= at <= after + 600


async def test_down_lines_without_a_retry_after_keep_their_doubling(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(413, DOWN + "\n")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    before = time.time()
    assert (await ccnow(cfg, "ship", A, *ARGS["ship"])).code == 75
    after = time.time()
    [(state, at)] = query(tmp_path, "SELECT state, next_attempt_at FROM commands")
    assert state == "queued" and before + 30 <= at <= after + 30


FIELD_LINES = {
    "add-tracking": "error_message x_tracknumber_1 is not a tracking number",
    "adjust": "error_message x_amount_1 exceeds order total",
    "ship": "error_message X_NOTES_1 too long",
}


@pytest.mark.parametrize("action", list(FIELD_LINES))
async def test_a_429_refusing_a_field_refuses_its_command(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str
) -> None:
    # Read first, as the same lines in a 200: posting it again gets the same refusal.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    _retries(cfg, 3)
    words = FIELD_LINES[action]
    fake_ccnow.always = Reply(429, words + "\n", headers={"Retry-After": "1"})
    result = await ccnow(cfg, action, A, *ARGS[action])
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "refused", words)]
    assert action_events(tmp_path) == [("order.action_refused", WORD[action])]
    assert len(action_posts(fake_ccnow)) == 1


async def test_a_429_refusing_one_command_keeps_the_others_waiting_for_its_retry_after(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    words = "error_message x_notes_1 too long"
    fake_ccnow.always = Reply(429, words + "\n", headers={"Retry-After": "600"})
    before = time.time()
    result = await ccnow(cfg, "ship", A, B, "--notes", "Thanks")
    after = time.time()
    assert result.code == 65, result.stdout + result.stderr
    sql = "SELECT order_id, state, next_attempt_at FROM commands ORDER BY id"
    [(a, a_state, _), (b, b_state, at)] = query(tmp_path, sql)
    assert (a, a_state, b, b_state) == (A, "refused", B, "queued")
    assert before + 600 <= at <= after + 600
    assert len(action_posts(fake_ccnow)) == 1


@pytest.mark.parametrize("body", ["", "Too Many Requests", DOWN + "\n"])
async def test_a_plain_429_is_still_turned_away_until_its_retry_after(
    tmp_path: Path, fake_ccnow: FakeCCNow, body: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(429, body, headers={"Retry-After": "600"})]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    before = time.time()
    assert (await ccnow(cfg, "add-tracking", A, *ARGS["add-tracking"])).code == 75
    after = time.time()
    [(state, at)] = query(tmp_path, "SELECT state, next_attempt_at FROM commands")
    assert state == "queued" and before + 600 <= at <= after + 600
    assert len(fake_ccnow.requests) == 1


@pytest.mark.parametrize("retries", [1, 3])
async def test_a_ship_whose_status_read_asks_to_wait_waits(
    tmp_path: Path, fake_ccnow: FakeCCNow, retries: int
) -> None:
    # The post's answer does not settle the order: its status is read at once, and that read
    # is answered 429, ten minutes. Asked again within 30 s, and the ship posted again after
    # 30 s: a rate limit met by more requests than it allows.
    fake_ccnow.orders = {A: "pending"}
    slow_down = Reply(429, "", headers={"Retry-After": "600"})
    fake_ccnow.script = [Reply(200, "message no_pending_orders\n"), slow_down]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    _retries(cfg, retries)
    before = time.time()
    result = await ccnow(cfg, "ship", A, *ARGS["ship"])
    after = time.time()
    assert result.code == 75, result.stdout + result.stderr
    assert len(fake_ccnow.requests) == 2  # the post, one read
    assert after - before < 10
    [(state, at)] = query(tmp_path, "SELECT state, next_attempt_at FROM commands")
    assert state == "queued" and before + 600 <= at <= after + 600
