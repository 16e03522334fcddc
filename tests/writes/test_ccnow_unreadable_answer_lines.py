"""What the warning lines of a CCNow post say when its answer is no CCNow answer (a gateway's
HTML page served with 200): the HTTP status, media type and a short start of the body, any
secret of the config in it masked; which orders and commands a post queued again holds; and
that a post turned away before it ran is not counted sent. A fake CCNow on 127.0.0.1 answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.writes.test_ccnow_actions import A, ccnow, commands

PAGE = f"<html>\n  <body>Gateway   ok; login?password={CCNOW_PASSWORD}&x=1</body></html>"


def lines(stderr: str, message: str) -> list[dict[str, Any]]:
    found = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    return [x for x in found if x["message"] == message]


async def test_an_answer_that_is_no_ccnows_names_its_status_type_and_masked_start(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(200, PAGE, "text/html; charset=utf-8")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "adjust", A, "--amount", "1.00")
    assert result.code == 75, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "uncertain", "unreadable_answer")]
    assert CCNOW_PASSWORD not in result.stderr
    [line] = lines(result.stderr, "ccnow.answer_unreadable")
    assert line["level"] == "warning"
    assert line["http_status"] == 200
    assert line["content_type"] == "text/html"
    assert line["snippet"] == "<html> <body>Gateway ok; login?password=***&x=1</body></html>"
    assert (line["order_ids"], line["command_ids"], line["commands"]) == ([A], [1], 1)


async def test_a_post_queued_again_names_up_to_five_of_its_orders_and_commands(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    orders = [f"396-10-{1150 + i}" for i in range(7)]
    fake_ccnow.orders = dict.fromkeys(orders, "pending")
    fake_ccnow.script = [Reply(200, "x" * 500, "")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "ship", *orders)
    assert result.code == 75, result.stdout + result.stderr
    [line] = lines(result.stderr, "ccnow.action_retry_later")
    assert line["commands"] == 7
    assert line["order_ids"] == orders[:5]
    assert line["command_ids"] == [1, 2, 3, 4, 5]
    [unread] = lines(result.stderr, "ccnow.answer_unreadable")
    assert (unread["http_status"], unread["content_type"]) == (200, None)
    assert unread["snippet"] == "x" * 80


async def test_a_post_turned_away_before_it_ran_is_not_counted_sent(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A rate limiter's 429 asking an hour: CCNow's program never got the post.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(429, "", headers={"Retry-After": "3600"})]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "cancel", A)
    assert result.code == 75, result.stdout + result.stderr
    assert "sent 0, done 0, refused 0, uncertain 0, queued 1" in result.stderr, result.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["queued"]
