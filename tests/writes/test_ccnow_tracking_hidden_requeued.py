"""A tracking upload whose post ends queued after an attempt a proxy's 503 without CCNow's words
answered (`Backend fetch failed`, which may come after CCNow added it): its Retry-After asks
longer than a retry within the post may wait, or every retry met such a 503. The command keeps
that an earlier attempt may have reached CCNow with it: its next post, refused `order not
pending` (the order shipped meanwhile), leaves it `uncertain` for a person, never `refused`
(it was, exit 65), and it is never uploaded again; nor is it refused at its turn by the
snapshot's status, which that upload does not change. A ship turned away so is unchanged (its
order's status tells), and so is an upload turned away in words saying nothing ran (a 429).
And a line naming the upload's own field, in its order's line too, refuses it. Against a fake
CCNow on 127.0.0.1 that counts the posts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import ARGS, A, ccnow, commands, make_due, query, tracked
from tests.writes.test_ccnow_retry_finds_taken import VARNISH
from tests.writes.test_ccnow_tracking_hidden_retry import MAYBE, ShippedMeanwhile, uploads

LONG = {"Retry-After": "7200"}  # longer than a retry within a post waits: queued at once
TRACK = ("add-tracking", A, *ARGS["add-tracking"])


@pytest.fixture
async def shipped_meanwhile() -> AsyncIterator[ShippedMeanwhile]:
    fake = await ShippedMeanwhile().start()
    try:
        yield fake
    finally:
        await fake.close()


def reached(tmp_path: Path) -> list[tuple[str, bool]]:
    rows = query(tmp_path, "SELECT state, maybe_reached_at IS NOT NULL FROM commands")
    return [(state, bool(maybe)) for state, maybe in rows]


async def test_an_upload_queued_behind_a_hiding_503_asking_long_is_uncertain_next_run(
    tmp_path: Path, shipped_meanwhile: ShippedMeanwhile
) -> None:
    fake = shipped_meanwhile
    fake.orders = {A: "pending"}
    fake.after_applying = [Reply(503, VARNISH, content_type="text/html", headers=LONG)]
    cfg = write_config(tmp_path, ccnow=fake)
    first = await ccnow(cfg, *TRACK)
    assert first.code == 75, first.stdout + first.stderr
    assert [(o, a) for o, a, _ in fake.actions] == [(A, "track")]  # CCNow has it
    assert reached(tmp_path) == [("queued", True)]
    await make_due(tmp_path)
    again = await ccnow(cfg, *TRACK)
    assert again.code == 75, again.stdout + again.stderr
    assert commands(tmp_path) == [(A, "uncertain", f"error_message order not pending ({MAYBE})")]
    assert uploads(fake) == 2  # the first post and the next, never a third
    await make_due(tmp_path)
    assert (await ccnow(cfg, *TRACK)).code == 75
    assert uploads(fake) == 2


async def test_an_upload_whose_retries_all_met_hiding_503s_is_uncertain_next_run(
    tmp_path: Path, shipped_meanwhile: ShippedMeanwhile
) -> None:
    fake = shipped_meanwhile
    fake.orders = {A: "pending"}
    hiding = Reply(503, VARNISH, content_type="text/html")
    fake.after_applying = [hiding]
    fake.script = [hiding, hiding]  # retries = 1: both attempts answered by the proxy
    cfg = write_config(tmp_path, ccnow=fake)
    first = await ccnow(cfg, *TRACK)
    assert first.code == 75, first.stdout + first.stderr
    assert reached(tmp_path) == [("queued", True)]
    await make_due(tmp_path)
    again = await ccnow(cfg, *TRACK)
    assert again.code == 75, again.stdout + again.stderr
    assert commands(tmp_path) == [(A, "uncertain", f"error_message order not pending ({MAYBE})")]


async def test_an_upload_queued_behind_a_hiding_503_is_not_refused_at_its_turn(
    tmp_path: Path, shipped_meanwhile: ShippedMeanwhile
) -> None:
    # The snapshot shows the order shipped by its turn: that says nothing of whether CCNow
    # added the upload first (it did). Posted, CCNow's `not pending` leaves it to a person.
    fake = shipped_meanwhile
    fake.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake, A)
    fake.after_applying = [Reply(503, VARNISH, content_type="text/html", headers=LONG)]
    assert (await ccnow(cfg, *TRACK)).code == 75
    assert fake.orders[A] == "mark_shipped"
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    await make_due(tmp_path)
    again = await ccnow(cfg, *TRACK)
    assert again.code == 75, again.stdout + again.stderr
    assert commands(tmp_path) == [(A, "uncertain", f"error_message order not pending ({MAYBE})")]


async def test_an_upload_refused_in_its_order_line_by_its_own_field_is_refused(
    tmp_path: Path, shipped_meanwhile: ShippedMeanwhile
) -> None:
    # After a hiding 503, the retry's order line names the upload's own field: the first
    # attempt carried the same field, refused the same way.
    fake = shipped_meanwhile
    fake.orders = {A: "pending"}
    fake.script = [
        Reply(503, VARNISH, content_type="text/html"),
        Reply(200, f"{A} error_message x_tracknumber_1 is not a tracking number\n"),
    ]
    cfg = write_config(tmp_path, ccnow=fake)
    result = await ccnow(cfg, *TRACK)
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [
        (A, "refused", "error_message x_tracknumber_1 is not a tracking number")
    ]


async def test_an_upload_refused_by_its_own_field_after_an_earlier_post_is_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The older rule: an earlier post whose answer was lost may have reached CCNow with it;
    # the next post's order line naming its own field refuses it all the same.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [
        Reply(503, VARNISH, content_type="text/html", headers=LONG),
        Reply(200, f"{A} error_message x_tracknumber_1 is not a tracking number\n"),
    ]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, *TRACK)).code == 75
    assert reached(tmp_path) == [("queued", True)]
    await make_due(tmp_path)
    result = await ccnow(cfg, *TRACK)
    assert result.code == 65, result.stdout + result.stderr
    assert query(tmp_path, "SELECT state FROM commands") == [("refused",)]


async def test_an_upload_turned_away_by_a_429_asking_long_is_refused_next_run(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A 429 says nothing ran: nothing is kept, and CCNow's `not pending` refuses it.
    fake_ccnow.orders = {A: "completed"}
    fake_ccnow.script = [Reply(429, "Too Many Requests", headers=LONG)]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, *TRACK)).code == 75
    assert reached(tmp_path) == [("queued", False)]
    await make_due(tmp_path)
    result = await ccnow(cfg, *TRACK)
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "refused", "error_message order not pending")]


async def test_a_ship_queued_behind_a_hiding_503_asking_long_keeps_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A ship's order's status tells whether it took: unchanged, nothing is kept for it.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(503, VARNISH, content_type="text/html", headers=LONG)]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "ship", A, *ARGS["ship"])).code == 75
    assert reached(tmp_path) == [("queued", False)]
    await make_due(tmp_path)
    assert (await ccnow(cfg, "ship", A, *ARGS["ship"])).code == 0
    assert query(tmp_path, "SELECT state FROM commands") == [("succeeded",)]
