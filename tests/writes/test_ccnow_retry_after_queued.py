"""A post turned away with a Retry-After (a 429; a 503 without CCNow's words) stays queued as
long as it asks (its 30 s doubling when longer), an hour at most, as every queued command: it
was due again after 30 s, a rate limit asking 10 minutes met by another post each 30 s. Each
answer is sent by a fake on 127.0.0.1."""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.fake_providers import FakeCCNow, Reply
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
