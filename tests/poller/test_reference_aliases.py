"""A CCV notification names an order by the external reference it was tracked or submitted with,
and CCV calls that URL once. When CCV answers the order with another reference (its value is
kept), the one the URL names still finds the order: through the real client, the loopback fake
CCV and a real SQLite store. An order that stops being followed takes its old names with it."""

from __future__ import annotations

import json
import logging
import time

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccv import CCVCoordinator
from reconciler.store import submissions as subs
from reconciler.store.not_sent import not_sent
from reconciler.store.retention import prune
from tests.fake_providers import FakeCCV

ORDER, OTHER = (f"a11a5000-0000-4000-8000-00000000000{n}" for n in (1, 2))


async def _status(ccv: CCVCoordinator, order_id: str) -> tuple[str | None, str | None]:
    key = OrderKey("ccv", "default", order_id)
    state = (await ccv.store.orders.load([key]))[key]
    return state.status, state.external_reference


async def test_a_notification_for_the_tracked_reference_checks_the_order_after_ccv_renamed_it(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    await ccv.store.orders.track("ccv", "default", [(ORDER, "abc")], time.time())
    fake_ccv.orders = {ORDER: "New"}
    fake_ccv.refs = {ORDER: "ABC"}
    first = await ccv.check_reference("abc")
    assert first is not None and first.checked == 1
    assert await _status(ccv, ORDER) == ("New", "ABC")  # CCV's word is kept

    # CCV calls the URL it was given, signed for "abc", once per change.
    fake_ccv.orders[ORDER] = "Screening"
    second = await ccv.check_reference("abc")
    assert second is not None and second.checked == 1  # before: None, only remembered
    assert await _status(ccv, ORDER) == ("Screening", "ABC")
    [changed] = [e for e in await ccv.store.events.history() if e.type == "order.status_changed"]
    assert json.loads(changed.body)["data"]["via"] == "notification"

    # Renamed again: every name the order carried finds it, each once.
    fake_ccv.orders[ORDER], fake_ccv.refs[ORDER] = "Processing", "ABC-1"
    assert (await ccv.check_reference("ABC")) is not None
    assert await _status(ccv, ORDER) == ("Processing", "ABC-1")
    for reference in ("abc", "ABC", "ABC-1"):
        [order] = await ccv.store.orders.by_reference(reference)
        assert order.key.order_id == ORDER


async def test_the_old_references_of_an_untracked_or_pruned_order_find_nothing(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    now = time.time()
    await ccv.store.orders.track("ccv", "default", [(ORDER, "abc"), (OTHER, "def")], now)
    fake_ccv.orders = {ORDER: "New", OTHER: "Completed"}  # OTHER ends
    fake_ccv.refs = {ORDER: "ABC", OTHER: "DEF"}
    assert (await ccv.full_pass(via="catch-up")).ok
    assert [o.key.order_id for o in await ccv.store.orders.by_reference("abc")] == [ORDER]
    assert [o.key.order_id for o in await ccv.store.orders.by_reference("def")] == [OTHER]

    await ccv.store.orders.untrack("ccv", "default", [ORDER])
    watched = {("ccv", "default"): 180 * 86400.0}
    report = await prune(ccv.store, sinks=["jsonl"], keep_s=60, now=now + 86400, watched=watched)
    assert report.orders == 1  # OTHER, ended a day before

    # Followed again, under other references: a notification for an old name must not reach
    # them, nor ask CCV.
    await ccv.store.orders.track("ccv", "default", [(ORDER, "xyz"), (OTHER, None)], now)
    asked = len(fake_ccv.requests)
    assert [await ccv.store.orders.by_reference(r) for r in ("abc", "def")] == [[], []]
    for reference in ("abc", "def"):
        assert await ccv.check_reference(reference) is None  # remembered, as for any unknown
    assert len(fake_ccv.requests) == asked


async def test_an_alias_does_not_settle_an_uncertain_submit_of_the_same_reference(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    # ORDER was tracked as "abc" and CCV renamed it; a later submit of "abc" (another order)
    # was left uncertain. CCV's notification for "abc" tells of the new order: the submit is
    # settled without ORDER's id, and the reference waits for the new order's track.
    now = time.time()
    await ccv.store.orders.track("ccv", "default", [(ORDER, "abc")], now)
    fake_ccv.orders, fake_ccv.refs = {ORDER: "New"}, {ORDER: "ABC"}
    assert (await ccv.full_pass(via="catch-up")).ok
    sub_id = await subs.record(ccv.store, "default", "abc", now)
    await subs.make_uncertain(ccv.store, "default", [sub_id], [], reason="timeout", now=now)

    report = await ccv.check_reference("abc")
    assert report is not None and report.checked == 1  # ORDER is still checked
    submission = await subs.find(ccv.store, "default", "abc")
    assert submission is not None and submission.state == "resolved"
    assert submission.order_id is None  # not ORDER's: ORDER only had the reference once
    assert await ccv.store.sources.take_references("default", ["abc"], now - 60) == {"abc"}


async def test_a_notification_for_a_reference_a_person_said_was_not_sent_settles_it(
    ccv: CCVCoordinator, caplog: pytest.LogCaptureFixture
) -> None:
    # `ccv resolve --not-sent` freed the reference; CCV's notification says it has an order
    # with it after all. Before, only a warning: a new submit of the reference was taken, and
    # made a second order.
    now = time.time()
    sub_id = await subs.record(ccv.store, "default", "said-gone", now)
    await subs.make_uncertain(ccv.store, "default", [sub_id], [], reason="timeout", now=now)
    closed, _ = await not_sent(ccv.store, "default", "said-gone", now)
    assert closed is not None and closed.reason == "not_sent"
    caplog.set_level(logging.INFO, logger="reconciler")

    assert await ccv.check_reference("said-gone") is None  # remembered until it is tracked
    assert await ccv.check_reference("never-submitted") is None
    warned = [r for r in caplog.records if r.getMessage() == "ccv.not_sent_contradicted"]
    assert [r.levelno for r in warned] == [logging.WARNING]
    assert getattr(warned[0], "fields", {})["external_reference"] == "said-gone"

    settled = await subs.find(ccv.store, "default", "said-gone")
    assert settled is not None and (settled.id, settled.state) == (sub_id, "resolved")
    with pytest.raises(subs.SubmissionExists):  # the API's 409
        await subs.record(ccv.store, "default", "said-gone", time.time())
    resolved = [
        json.loads(e.body)["data"]
        for e in await ccv.store.events.history()
        if e.type == "order.submit_resolved"
    ]
    assert [(d["how"], d["submission_id"]) for d in resolved] == [
        ("not_sent", sub_id),
        ("notification", sub_id),
    ]
    # CCV calls again: nothing more to settle, nor to warn of.
    assert await ccv.check_reference("said-gone") is None
    assert len([r for r in caplog.records if r.getMessage() == "ccv.not_sent_contradicted"]) == 1


@pytest.mark.parametrize(
    ("earlier", "status", "reason"),
    [(False, 400, "http_400"), (True, 400, "http_400"), (False, None, "connection")],
    ids=["refused", "not-sent-then-refused", "not-reached"],
)
async def test_a_notification_after_ccv_refused_the_submit_takes_the_reference(
    ccv: CCVCoordinator,
    caplog: pytest.LogCaptureFixture,
    earlier: bool,
    status: int | None,
    reason: str,
) -> None:
    # CCV answered 400 (or was never reached), and its notification for the reference came
    # half a second later (not while the submit waited): CCV has an order of it. Before, the
    # refusal kept the reference free, and a second `ccv submit` of it went to CCV (a second
    # order).
    now = time.time()
    if earlier:  # closed as not sent, then submitted again and refused
        first = await subs.record(ccv.store, "default", "gone-twice", now)
        await subs.make_uncertain(ccv.store, "default", [first], [], reason="timeout", now=now)
        await not_sent(ccv.store, "default", "gone-twice", now)
    second = await subs.record(ccv.store, "default", "gone-twice", now)
    await subs.fail(ccv.store, second, http_status=status, reason=reason, now=now)
    caplog.set_level(logging.INFO, logger="reconciler")

    assert await ccv.check_reference("gone-twice") is None
    latest = await subs.find(ccv.store, "default", "gone-twice")
    assert latest is not None and (latest.id, latest.state) == (second, "resolved")
    with pytest.raises(subs.SubmissionExists):  # the API's 409: not sent again
        await subs.record(ccv.store, "default", "gone-twice", time.time())
    # One neutral name, whether CCV refused it or was never reached (it refused nothing).
    warned = [r for r in caplog.records if r.getMessage() == "ccv.submit_failed_contradicted"]
    assert [r.levelno for r in warned] == [logging.WARNING]
    said = getattr(warned[0], "fields", {})
    assert (said["reason"], said["status"]) == (reason, status)
    assert not [r for r in caplog.records if "refused_contradicted" in r.getMessage()]
    # The person's `--not-sent` that freed the reference for the refused submit is named too:
    # it was wrong, and is the likely culprit.
    blamed = [r for r in caplog.records if r.getMessage() == "ccv.not_sent_contradicted"]
    assert [r.levelno for r in blamed] == ([logging.WARNING] if earlier else [])
    resolved = [
        (json.loads(e.body)["data"], e.severity)
        for e in await ccv.store.events.history()
        if e.type == "order.submit_resolved" and json.loads(e.body)["data"]["how"] == "notification"
    ]
    # No `order.submit_uncertain` came before it: a warning, marked contradicted.
    assert [
        (d["submission_id"], d["reason"], d.get("contradicted"), d["severity"], sev)
        for d, sev in resolved
    ] == [(second, reason, True, "warning", "warning")]


async def test_a_reference_two_orders_carry_settles_an_uncertain_submit_naming_neither(
    ccv: CCVCoordinator, fake_ccv: FakeCCV, caplog: pytest.LogCaptureFixture
) -> None:
    # ORDER and OTHER both carry "abc" (CCV answered it for both, or both were tracked with
    # it), and a submit of "abc" was left uncertain. CCV's notification names the reference
    # alone: which order it tells of is not known, so the submit is settled naming neither
    # (not whichever the store lists first), the reference waits for the order submitted with
    # it, and the line names both that carry it.
    now = time.time()
    # Recorded before the orders carry it (a submit of a reference a followed order carries
    # is refused): CCV's answers gave it to them while the submit was uncertain.
    sub_id = await subs.record(ccv.store, "default", "abc", now)
    await subs.make_uncertain(ccv.store, "default", [sub_id], [], reason="timeout", now=now)
    await ccv.store.orders.track("ccv", "default", [(ORDER, "abc"), (OTHER, "abc")], now)
    fake_ccv.orders, fake_ccv.refs = {ORDER: "New", OTHER: "New"}, {ORDER: "abc", OTHER: "abc"}

    with caplog.at_level(logging.INFO, logger="reconciler"):
        report = await ccv.check_reference("abc")
    assert report is not None and report.checked == 2  # both are still checked
    submission = await subs.find(ccv.store, "default", "abc")
    assert submission is not None and submission.state == "resolved"
    assert submission.order_id is None
    [event] = [e for e in await ccv.store.events.history() if e.type == "order.submit_resolved"]
    assert json.loads(event.body)["data"]["order_id"] is None
    [line] = [r.__dict__["fields"] for r in caplog.records if r.message == "ccv.submit_resolved"]
    assert (line["order_id"], line["carried_by"]) == (None, sorted([ORDER, OTHER]))
    assert await ccv.store.sources.take_references("default", ["abc"], now - 60) == {"abc"}


async def test_a_reference_one_order_carries_settles_an_uncertain_submit_naming_it(
    ccv: CCVCoordinator, fake_ccv: FakeCCV, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    sub_id = await subs.record(ccv.store, "default", "abc", now)  # before the order carries it
    await subs.make_uncertain(ccv.store, "default", [sub_id], [], reason="timeout", now=now)
    await ccv.store.orders.track("ccv", "default", [(ORDER, "abc")], now)
    fake_ccv.orders, fake_ccv.refs = {ORDER: "New"}, {ORDER: "abc"}

    with caplog.at_level(logging.INFO, logger="reconciler"):
        report = await ccv.check_reference("abc")
    assert report is not None and report.checked == 1
    submission = await subs.find(ccv.store, "default", "abc")
    assert submission is not None and (submission.state, submission.order_id) == (
        "resolved",
        ORDER,
    )
    [line] = [r.__dict__["fields"] for r in caplog.records if r.message == "ccv.submit_resolved"]
    assert (line["order_id"], line["carried_by"]) == (ORDER, [ORDER])
    assert await ccv.store.sources.take_references("default", ["abc"], now - 60) == set()
