"""An adjust CCNow answers with its order's line `mark_shipped`: the document's own example
answers a discount applied beside a ship with that one line, so the discount may have been
applied; called refused, it might be given again another way. A person looks (`uncertain`).
A tracking upload so answered, and an adjust answered another status past pending, stay
refused (tests/writes/test_ccnow_keys_and_echoed_secrets.py). Each answer comes from a fake on
127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from tests.fake_providers import FakeCCNow
from tests.writes.test_ccnow_actions import A, ccnow, commands, tracked
from tests.writes.test_ccnow_commands_one_at_a_time import action_events

WORDS = "answered mark_shipped, not pending (CCNow may apply a discount to an order marked shipped)"


async def test_an_adjust_answered_mark_shipped_is_uncertain_not_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # It was `refused` (`answered mark_shipped, not pending`), though CCNow may have it.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} mark_shipped"]
    run = await ccnow(cfg, "adjust", A, "--amount", "3.00")
    assert run.code == 75, run.stdout + run.stderr
    assert f"{A} adjust uncertain: {WORDS} (command 1)" in run.stdout
    assert commands(tmp_path) == [(A, "uncertain", WORDS)]
    assert action_events(tmp_path) == ["order.action_uncertain"]
    # A second discount of the order waits for a person's word on this one.
    again = await ccnow(cfg, "adjust", A, "--amount", "3.00", "--key", "second")
    assert again.code == 65, again.stdout + again.stderr
    assert len(fake_ccnow.actions) == 1


async def test_a_tracking_upload_answered_mark_shipped_is_still_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} mark_shipped"]
    run = await ccnow(cfg, "add-tracking", A, "--carrier", "DHL", "--number", "1")
    assert run.code == 65, run.stdout + run.stderr
    assert commands(tmp_path) == [(A, "refused", "answered mark_shipped, not pending")]
