"""A ship or cancel CCNow applied behind a proxy's 503 (`Backend fetch failed`, no CCNow words)
or a 429, whose retry within the same post CCNow refuses as not pending: its order's status is
read first, as a later post's refusal is. It was closed `refused` at once (exit 65), CCNow
having it shipped. Each answer is sent by a fake on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import A, ccnow, commands

VARNISH = (
    "<html><head><title>503 Backend fetch failed</title></head><body>"
    "<h1>Error 503 Backend fetch failed</h1><p>Varnish cache server</p></body></html>"
)
TAKEN = {"ship": "mark_shipped", "cancel": "mark_canceled"}
BEFORE = "already past pending when CCNow got this command"


def queries(fake: FakeCCNow) -> int:
    return len([r for r in fake.requests if r.form.get("x_action_1") == "query"])


@pytest.mark.parametrize("action", ["ship", "cancel"])
@pytest.mark.parametrize(
    "turned_away",
    [Reply(503, VARNISH, content_type="text/html"), Reply(429, "Too Many Requests")],
    ids=["503-varnish", "429"],
)
async def test_a_retry_within_the_post_refused_as_not_pending_reads_the_order_first(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, turned_away: Reply
) -> None:
    fake_ccnow.orders = {A: "pending"}
    # CCNow applies the first attempt; what stands before it answers so. The retry within the
    # post is answered `error_message order not pending` in the order's line.
    fake_ccnow.after_applying = [turned_away]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, action, A)
    assert result.code == 0, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "succeeded", f"{TAKEN[action]} ({BEFORE})")]
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, action)]
    assert queries(fake_ccnow) == 1


async def test_a_retry_within_the_post_refused_in_a_line_naming_its_field_reads_the_order_first(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    refusal = Reply(200, f"error_message x_orderid_1 {A} is not pending\n")
    fake_ccnow.after_applying = [Reply(503, VARNISH, content_type="text/html"), refusal]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "succeeded", f"mark_shipped ({BEFORE})")]
    assert queries(fake_ccnow) == 1


async def test_a_first_post_refused_as_not_pending_is_refused_without_a_read(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # No attempt before it: CCNow's `not pending` is about an order shipped elsewhere.
    fake_ccnow.orders = {A: "mark_shipped"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "ship", A)
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "refused", "error_message order not pending")]
    assert queries(fake_ccnow) == 0
