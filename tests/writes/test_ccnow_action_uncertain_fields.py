"""An `order.action_uncertain` names what a person looks the command up by in CCNow's
backroom: its key and what it asked (a discount's amount and notes, a tracking upload's carrier
and number), after the fields every action event has. Before, it named the order, the action and
the command's number only: which discount of an order (how much, which notes) was unknown from
the event. Read back from the jsonl sink, as a consumer gets them."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import call_cli, read_events
from tests.fake_providers import FakeCCNow, cut_off
from tests.writes.test_ccnow_action_event_fields import KEYS, only
from tests.writes.test_ccnow_actions import ccnow, tracked

A = "396-10-1142"
COMMAND = ["key", "amount", "notes", "trackname", "tracknumber"]


async def test_an_uncertain_discount_names_its_key_amount_and_notes(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [cut_off(f"{A} pend")]
    given = ("--amount", "7.25", "--notes", "goodwill, ticket 4411", "--key", "disc-4411")
    assert (await ccnow(cfg, "adjust", A, *given)).code == 75
    uncertain = only(tmp_path, "order.action_uncertain")
    assert list(uncertain) == [*KEYS, *COMMAND]
    assert {k: uncertain[k] for k in COMMAND} == {
        "key": "disc-4411",
        "amount": "7.25",
        "notes": "goodwill, ticket 4411",
        "trackname": None,
        "tracknumber": None,
    }
    # The other outcomes keep their shape.
    assert (await call_cli("--config", cfg, "ccnow", "resolve", A, "--sent")).code == 0
    assert list(only(tmp_path, "order.action_resolved")) == [*KEYS, "resolved"]
    assert all(
        list(e["data"]) == KEYS
        for e in read_events(tmp_path)
        if e["type"] in ("order.action_succeeded", "order.action_refused")
    )
