"""A post of ship, cancel or tracking whose answer was lost (a 524: CCNow may have run it),
then answered 503 with a Retry-After by a proxy on the retry within the post, was queued again
after its 30 s doubling, whatever the Retry-After asked (ten minutes: another post within one),
or retried within the post after 30 s. It now ends the post and stays queued as long as asked,
an hour at most, as a post turned away does; the post may have reached CCNow (its next answer
`not pending` is read as taken). Each answer is sent by a fake on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import ARGS, A, ccnow, query

LOST = Reply(524, "A timeout occurred")


@pytest.mark.parametrize(
    ("action", "retries", "asked", "wait"),
    [
        ("ship", 1, "600", 600),
        ("cancel", 1, "86400", 3600),  # an hour at most, as every queued command
        ("add-tracking", 1, "600", 600),
        # Past the 30 s a retry within the post may wait: the post ends at once, no third post.
        ("ship", 3, "600", 600),
    ],
    ids=["ship", "cancel-a-day", "add-tracking", "ship-retries-left"],
)
async def test_a_retry_after_that_follows_a_lost_answer_holds_the_post_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, retries: int, asked: str, wait: float
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [LOST, Reply(503, "Service Unavailable", headers={"Retry-After": asked})]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    cfg.write_text(cfg.read_text().replace("retries = 1", f"retries = {retries}"))
    before = time.time()
    result = await ccnow(cfg, action, A, *ARGS[action])
    after = time.time()
    assert result.code == 75, result.stdout + result.stderr
    assert len(fake_ccnow.requests) == 2
    assert after - before < 10  # no retry's 30 s wait within the post
    sql = "SELECT state, answer, next_attempt_at, maybe_reached_at FROM commands"
    [(state, answer, at, reached)] = query(tmp_path, sql)
    assert (state, answer) == ("queued", "http_503")
    assert before + wait <= at <= after + wait
    assert reached is not None  # the lost attempt may have reached CCNow


async def test_a_lost_answer_without_a_retry_after_is_posted_again_as_before(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [LOST, Reply(503, "Service Unavailable")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    before = time.time()
    result = await ccnow(cfg, "ship", A, *ARGS["ship"])
    after = time.time()
    assert result.code == 75, result.stdout + result.stderr
    [(state, at)] = query(tmp_path, "SELECT state, next_attempt_at FROM commands")
    # Its 30 s doubling, from its first post.
    assert state == "queued" and before + 30 <= at <= after + 30
