"""The rules of a CCNow ship or cancel answered as taken, as pure functions over plain data:
whether a read or the close contradicts it, and the one `order.action_unconfirmed` naming it."""

from __future__ import annotations

from reconciler.model import OrderKey, OrderState
from reconciler.store.commands import Command
from reconciler.taken import TAKEN, contradicted, unconfirmed_event, unconfirmed_ids, unheld

NOW = 1_800_000_000.0
STORE = "store-1"
KEY = OrderKey("ccnow", "default", "396-10-1142")


def command(action: str = "ship", *, closed_at: float | None = NOW, **kw: object) -> Command:
    fields: dict[str, object] = {
        **dict(id=7, account="default", order_id=KEY.order_id, action=action, key="k"),
        **dict(notes=None, amount=None, trackname=None, tracknumber=None, state="succeeded"),
        **dict(attempts=1, next_attempt_at=0.0, answer="mark_shipped", created_at=NOW - 60),
        **dict(closed_at=closed_at, unsettled_since=None, maybe_reached_at=None),
        **dict(held_since=None),
    }
    return Command(**{**fields, **kw})  # type: ignore[arg-type]


def row(status: str | None, **kw: object) -> OrderState:
    return OrderState(KEY, status, **kw)  # type: ignore[arg-type]


def test_what_a_ship_or_a_cancel_leads_to() -> None:
    assert TAKEN == {
        "ship": ("mark_shipped", "completed"),
        "cancel": ("mark_canceled", "canceled"),
    }


def test_a_read_moving_an_order_back_contradicts_an_action_no_later_read_confirmed() -> None:
    # The status the row held was applied before the close: the action is named.
    assert contradicted(command(), row("mark_shipped", last_checked=NOW - 1))
    # No read applied since the close: named.
    assert contradicted(command(), row("pending", last_checked=None))
    # A status the action does not lead to, applied after the close: named.
    assert contradicted(command(), row("canceled", last_checked=NOW + 5))
    # A command not closed: nothing confirmed it.
    assert contradicted(command(closed_at=None), row("completed", last_checked=NOW + 5))


def test_a_read_applied_after_the_close_saying_where_the_action_leads_confirms_it() -> None:
    assert not contradicted(command(), row("mark_shipped", last_checked=NOW + 5))
    assert not contradicted(command(), row("completed", last_checked=NOW + 5))
    assert not contradicted(command("cancel"), row("canceled", last_checked=NOW + 5))
    # The same second as the close is not after it.
    assert contradicted(command(), row("completed", last_checked=NOW))


def test_a_close_leaving_its_order_before_the_action_is_unheld() -> None:
    assert unheld(command(), row("pending"))
    assert unheld(command("cancel"), row("processing"))
    assert not unheld(command(), row("mark_shipped"))
    assert not unheld(command(), None)
    # A "not found" since the last status confirms nothing either way.
    assert not unheld(command(), row("pending", not_found=True))
    assert not unheld(command(), row("pending", missing_since=NOW - 3))
    # Only ships and cancels are answered as taken.
    assert not unheld(command("adjust"), row("pending"))


def test_the_unconfirmed_event_is_named_by_its_command_and_close_once() -> None:
    before, after = row("mark_shipped", last_checked=NOW - 1), row("pending")
    c = command()
    one = unconfirmed_event(
        STORE, c, closed_at=NOW, before=before, after=after, now=NOW + 9, via="poll"
    )
    again = unconfirmed_event(
        STORE, c, closed_at=NOW, before=after, after=after, now=NOW + 99, via="catch-up"
    )
    assert one.type == "order.action_unconfirmed"
    # The recipe pinned (store, kind, command id, order id, close time): an id changed by a
    # release would name the same command's event twice.
    assert one.id == again.id == "b9bbdc2f-2d8e-5165-a6f5-7655a4c63b73"
    other = unconfirmed_event(
        STORE, c, closed_at=NOW + 1, before=before, after=after, now=NOW + 9, via="poll"
    )
    assert other.id != one.id
    assert unconfirmed_ids(STORE, [c]) == {one.id: 7}


def test_only_ships_and_cancels_that_succeeded_can_be_named_unconfirmed() -> None:
    cancel = command("cancel", id=8)
    kept = [command(), cancel]
    dropped = [command(id=9, state="refused"), command("adjust", id=10)]
    assert sorted(unconfirmed_ids(STORE, [*kept, *dropped]).values()) == [7, 8]
