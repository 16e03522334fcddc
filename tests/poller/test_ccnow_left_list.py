"""An order leaves CCNow's pending list when a read of the list no longer names it after the one
before did, whatever status word it was listed with: that poll queries it at once, and from then
on its own rhythm asks about it, whatever its answer (README, "The schedule")."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.store import StoreError
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply

POLL_S = 5.0


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    """The CCNow account (poll_interval 5s) over the real client and the loopback fake."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake_ccnow, POLL_S) as made:
        yield made


def queried(fake: FakeCCNow) -> list[str]:
    """Return every order id queried (not the pending list), once per post naming it."""
    posts = [r.form for r in fake.requests if "x_orderid_1" in r.form]
    return [v for form in posts for k, v in form.items() if k.startswith("x_orderid_")]


async def statuses(coordinator: CCNowCoordinator, *ids: str) -> dict[str, str | None]:
    keys = [OrderKey("ccnow", "default", i) for i in ids]
    return {k.order_id: s.status for k, s in (await coordinator.store.orders.load(keys)).items()}


async def test_an_order_listed_with_any_status_word_is_queried_when_it_leaves(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    words = {"100-00-0001": "pending", "100-00-0002": "PENDING", "100-00-0003": "pending review"}
    fake_ccnow.orders = dict(words)
    fake_ccnow.pending_statuses = set(words.values())
    await coordinator.tick_pending_list()  # the list names them, and they are followed
    # A documented word in another case is that word; an undocumented one is kept as it came.
    assert await statuses(coordinator, *words) == {**words, "100-00-0002": "pending"}
    assert queried(fake_ccnow) == []

    fake_ccnow.orders = dict.fromkeys(words, "completed")  # the list: no_pending_orders
    clock.now += POLL_S
    await coordinator.tick_pending_list()
    assert sorted(queried(fake_ccnow)) == sorted(words)
    assert await statuses(coordinator, *words) == dict.fromkeys(words, "completed")


LEAVER, COMPANION = "100-00-0004", "100-00-0005"


@pytest.mark.parametrize(
    "answer",
    [
        None,  # the answers leave it out
        "error_message unknown order",  # not found (found before: confirmed 5 minutes later)
        "error_message order lookup failed, try again later",  # its own error line
    ],
)
async def test_an_order_that_left_the_list_and_fails_alone_keeps_its_own_rhythm(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, answer: str | None
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {LEAVER: "pending", COMPANION: "pending"}
    await coordinator.tick_pending_list()
    fake_ccnow.orders = {COMPANION: "completed"}  # it leaves too, in the same query
    if answer is None:
        fake_ccnow.omit = {LEAVER}
    elif "unknown" not in answer:  # else the fake's answer for an order it does not have
        fake_ccnow.orders[LEAVER] = answer

    for _ in range(12):  # a minute of polls and due ticks: asked once, when it left
        clock.now += POLL_S
        await coordinator.tick_pending_list()
        await coordinator.tick_due()
    # Left out, it is asked again alone in the same pass (brief n53), and not after it.
    again = [LEAVER] if answer is None else []
    assert sorted(queried(fake_ccnow)) == [LEAVER, *again, COMPANION]
    key = OrderKey("ccnow", "default", LEAVER)
    state = (await coordinator.store.orders.load([key]))[key]
    assert state.failure_streak <= 1 and state.status == "pending"
    assert not (await coordinator.store.sources.state("ccnow", "default")).failing


async def test_an_order_confirmed_not_found_is_not_asked_on_every_poll(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {LEAVER: "pending"}
    await coordinator.tick_pending_list()
    fake_ccnow.orders = {}  # the list is empty; a query answers `error_message unknown order`
    for _ in range(100):  # 500 s: its own check confirms it not found
        clock.now += POLL_S
        await coordinator.tick_pending_list()
        await coordinator.tick_due()
    history = await coordinator.store.events.history()
    assert [(e.type, e.order_id) for e in history][-1] == ("order.not_found", LEAVER)
    asked = len(queried(fake_ccnow))
    assert asked <= 5  # when it left, then at its own rhythm (min_interval, 2 minutes)

    for _ in range(60):  # five minutes more: checked at not_found_interval (a day), not per poll
        clock.now += POLL_S
        await coordinator.tick_pending_list()
        await coordinator.tick_due()
    assert len(queried(fake_ccnow)) == asked


async def test_orders_that_left_the_list_wait_out_a_store_that_cannot_say_which_are_open(
    ccnow: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    coordinator, clock = ccnow
    fake_ccnow.orders = {LEAVER: "pending", COMPANION: "pending"}
    await coordinator.tick_pending_list()
    fake_ccnow.orders[LEAVER] = "completed"  # it leaves the list

    async def store_failing(*args: object, **kwargs: object) -> None:
        raise StoreError("database reconciler.db is busy: another process is writing it")

    # The store fails as the poll reads which of the orders that left are still open.
    with monkeypatch.context() as patch:
        patch.setattr(coordinator.store.orders, "load", store_failing)
        clock.now += POLL_S
        with pytest.raises(StoreError):
            await coordinator.tick_pending_list()
    assert queried(fake_ccnow) == []

    # The next poll asks about it: it was forgotten, and waited for its own schedule.
    clock.now += POLL_S
    await coordinator.tick_pending_list()
    assert queried(fake_ccnow) == [LEAVER]
    assert await statuses(coordinator, LEAVER) == {LEAVER: "completed"}


class ListCutInId(FakeCCNow):
    """A CCNow whose CGI dies in the pending list's last order's id on every read of the list:
    the lines before it, then the id's first 7 characters (`100-00-`), chunked. Its queries
    answer whole."""

    listing = False

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        self.listing = not ids
        return super()._lines(ids, form)

    def _text(self, lines: list[str]) -> Reply:
        if not self.listing or len(lines) < 2:
            return super()._text(lines)
        *before, last = lines
        return Reply(200, "".join(f"{x}\n" for x in before) + last[:7], chunked=True)


async def test_a_list_cut_in_an_id_at_every_read_fails_no_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    listed = ["100-00-0001", "100-00-0002", "100-00-0003"]
    async with ListCutInId() as fake, ccnow_coordinator(tmp_path, fake, POLL_S) as made:
        coordinator, clock = made
        fake.orders = dict.fromkeys(listed, "pending")
        await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in listed], 0)
        with caplog.at_level(logging.WARNING):
            for _ in range(12):  # a minute of polls and due ticks
                clock.now += POLL_S
                await coordinator.tick_pending_list()
                await coordinator.tick_due()
        events = [e.type for e in await coordinator.store.events.history() if e.order_id is None]
        state = await coordinator.store.sources.state("ccnow", "default")
        found = await statuses(coordinator, *listed)
        list_posts = [r for r in fake.requests if "x_orderid_1" not in r.form]
    # Was: the list failed `truncated_answer` after its retries at every poll, the account
    # failed for good (source.failed, never recovered). The lines before the cut are read,
    # the order cut in its id is asked by a status query.
    assert (events, state.failing) == ([], False)
    assert found == dict.fromkeys(listed, "pending")
    assert any(r.msg == "ccnow.pending_lines_unreadable" for r in caplog.records)
    # Read at its second cut at the same byte: each read of the list is two posts.
    assert len(list_posts) == 2 * 12
