"""CCNow's action events (`order.action_succeeded`, `_refused`, `_uncertain`, `_resolved`)
carry every order event's fields (DESIGN.md, "Events"), read from the snapshot before and after
the command closed, then their own: a consumer reading `data["end_state"]` on any `order.*`
event finds it. Read back from the jsonl sink, as a consumer gets them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.events import action_event, action_resolved_event
from reconciler.model import OrderKey, OrderState
from tests.conftest import call_cli, read_events, write_config
from tests.fake_providers import FakeCCNow, Reply, cut_off
from tests.writes.test_ccnow_actions import ccnow, tracked

A, B = "396-10-1142", "397-10-1159"
# The contract's order, then the action's own fields.
KEYS = [
    "source",
    "account",
    "order_id",
    "external_reference",
    "previous_status",
    "status",
    "end_state",
    "severity",
    "via",
    "unknown_status",
    "action",
    "command_id",
    "answer",
]


def only(tmp_path: Path, type: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e["data"] for e in read_events(tmp_path) if e["type"] == type]
    assert len(found) == 1, found
    return found[0]


def common(data: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(data[k] for k in ("external_reference", "previous_status", "status", "end_state"))


async def test_a_ship_that_took_carries_the_status_before_and_after(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    assert (await ccnow(cfg, "ship", A)).code == 0
    data = only(tmp_path, "order.action_succeeded")
    assert list(data) == KEYS
    assert data == {
        "source": "ccnow",
        "account": "default",
        "order_id": A,
        "external_reference": None,
        "previous_status": "pending",
        "status": "mark_shipped",
        "end_state": False,
        "severity": "info",
        "via": "action",
        "unknown_status": False,
        "action": "ship",
        "command_id": 1,
        "answer": "mark_shipped",
    }


async def test_an_action_on_an_order_not_followed_has_no_previous_status(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {B: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "cancel", B)).code == 0
    data = only(tmp_path, "order.action_succeeded")
    assert common(data) == (None, None, "mark_canceled", False)


async def test_a_refusal_here_carries_the_status_it_was_refused_for(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "canceled"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    await ccnow(cfg, "ship", A)
    assert fake_ccnow.actions == []
    data = only(tmp_path, "order.action_refused")
    assert list(data) == KEYS
    # Nothing changed: the same status before and after; `canceled` is an end state.
    assert common(data) == (None, "canceled", "canceled", True)
    assert (data["severity"], data["via"], data["action"]) == ("warning", "action", "ship")


async def test_a_refusal_by_ccnow_carries_the_status_its_answer_showed(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    # Shipped meanwhile in CCNow's backroom, not polled: CCNow's line for the order says so.
    fake_ccnow.script = [Reply(200, f"{A} completed\n")]
    await ccnow(cfg, "cancel", A)
    data = only(tmp_path, "order.action_refused")
    assert data["answer"] == "answered completed, not mark_canceled"
    assert common(data) == (None, "pending", "completed", False)
    changed = only(tmp_path, "order.status_changed")
    assert (changed["previous_status"], changed["status"]) == ("pending", "completed")


async def test_an_uncertain_discount_and_its_resolve_carry_the_order_status(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [cut_off(f"{A} pend")]
    assert (await ccnow(cfg, "adjust", A, "--amount", "7.25")).code == 75
    uncertain = only(tmp_path, "order.action_uncertain")
    # Then the command's own fields (test_ccnow_action_uncertain_fields.py).
    assert list(uncertain)[: len(KEYS)] == KEYS
    assert common(uncertain) == (None, "pending", "pending", False)
    assert (await call_cli("--config", cfg, "ccnow", "resolve", A, "--sent")).code == 0
    resolved = only(tmp_path, "order.action_resolved")
    assert list(resolved) == [*KEYS, "resolved"]
    assert common(resolved) == (None, "pending", "pending", False)
    assert (resolved["via"], resolved["resolved"]) == ("action", "sent")


async def test_a_refusal_in_the_order_line_without_a_status_keeps_the_status_before(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Closed without a status from CCNow: the row after is the row before, not "not followed".
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, f"{A} error_message invalid amount\n")]
    await ccnow(cfg, "adjust", A, "--amount", "7.25")
    data = only(tmp_path, "order.action_refused")
    assert common(data) == (None, "pending", "pending", False)


async def test_an_action_answered_with_an_undocumented_status_says_it_is_unknown(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # As every order event does: a consumer keys on `unknown_status` for the words to look at.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, f"{A} pending review\n")]
    await ccnow(cfg, "ship", A)
    (data,) = [e["data"] for e in read_events(tmp_path) if e["type"].startswith("order.action")]
    assert (data["status"], data["unknown_status"]) == ("pending review", True)


def test_the_order_fields_leave_the_ids_as_earlier_versions_gave_them() -> None:
    # An upgraded daemon redelivering, or finding an outcome again, keeps the ids: these are
    # the ids the version before these fields gave.
    row = OrderState(OrderKey("ccnow", "a", A), "pending", "shop-1")
    for order in (None, row):
        refused = action_event(
            "store-1", 5, "refused", account="a", order_id=A, action="ship", answer="x",
            time=1000.0, before=order, after=order,
        )  # fmt: skip
        resolved = action_resolved_event(
            "store-1", 5, account="a", order_id=A, action="adjust", resolved="sent",
            answer="x", uncertain_at=900.0, time=1000.0, order=order,
        )  # fmt: skip
        assert refused.id == "a9cfac01-3cae-5d98-878b-1c9609d186d2"
        assert resolved.id == "44bbbc71-6caf-5716-9dbd-56546c91c270"
    assert refused.data["external_reference"] == "shop-1"
