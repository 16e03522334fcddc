"""One order's bad line in a batched CCNow answer fails that order alone (probe 27: it failed
the account, and `source.failed` / `source.recovered` flapped for ever); a framed answer whose
last line is plainly cut is asked again; the pending list's unreadable line hides no other."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import Observation, OrderKey, Outcome, normalize_ccnow_id
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_batches import FOUND_ORDERS, Said, Split
from reconciler.sources.errors import (
    AuthenticationFailed,
    ProtocolError,
    SourceError,
    SourceUnavailable,
)
from tests.conftest import ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply, ccnow_config

A, B, C, D = "500-00-0001", "500-00-0002", "500-00-0003", "500-00-0004"


class LinesFake(FakeCCNow):
    """FakeCCNow whose line for an order can be set (`{n}`: the order's field number in the
    post, `{id}`: its id as posted), and that adds `stray` lines to any post naming their
    order (a line no asked order's can be read from), and `stray_in_several` to any post naming
    more than one order."""

    def __init__(self) -> None:
        super().__init__()
        self.line_for: dict[str, str] = {}
        self.stray: dict[str, str] = {}
        self.stray_in_several: str | None = None

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        if not ids:
            return super()._lines(ids, form)
        lines = []
        for n, raw in enumerate(ids, 1):
            order_id = normalize_ccnow_id(raw)
            own = self.line_for.get(order_id)
            lines += super()._lines([raw]) if own is None else [own.format(n=n, id=raw)]
        if len(ids) > 1 and self.stray_in_several is not None:
            lines.append(self.stray_in_several)
        return lines + [self.stray[i] for i in map(normalize_ccnow_id, ids) if i in self.stray]


@pytest.fixture
async def fake() -> AsyncIterator[LinesFake]:
    async with LinesFake() as fake:
        fake.orders = {A: "mark_shipped", B: "mark_shipped", C: "completed", D: "pending"}
        yield fake


async def query(fake: FakeCCNow, ids: list[str], **changes: int) -> dict[str, Observation]:
    seen: dict[str, Observation] = {}

    async def emit(observation: Observation) -> None:
        seen[observation.key.order_id] = observation

    async with aiohttp.ClientSession() as session:
        client = CCNowClient(ccnow_config(fake.url, **changes), session)
        await client.query(ids, emit)
    return seen


def said(seen: dict[str, Observation]) -> dict[str, tuple[Outcome, str | None]]:
    return {i: (o.outcome, o.status or o.reason) for i, o in seen.items()}


@pytest.mark.parametrize(
    ("line", "outcome"),
    [
        # A line that starts with the order's id and reads no further: its own failure.
        ("{id}: mark_shipped", (Outcome.FAILED, "order_error")),
        ("{id}", (Outcome.FAILED, "order_error")),
        # An error line naming the order by its field, or by its number (hyphens or not).
        ("error_message x_orderid_{n} invalid order number {id}", (Outcome.NOT_FOUND, None)),
        # Its words after the field's name say so (README: `order.not_found`).
        ("error_message x_orderid_{n} not found", (Outcome.NOT_FOUND, None)),
        ("error_message x_orderid_{n}: not_found", (Outcome.NOT_FOUND, None)),
        ("error_message x_orderid_{n} invalid order for this account", (Outcome.NOT_FOUND, None)),
        ("error_message x_action_{n}: database busy", (Outcome.FAILED, "order_error")),
        ("error_message order 500000002 locked", (Outcome.FAILED, "order_error")),
        # Named by its id alone (README): its words after the id say so.
        ("error_message {id} not found", (Outcome.NOT_FOUND, None)),
        ("error_message 500000002: unknown order", (Outcome.NOT_FOUND, None)),
        # Words about the order, not the account's (was: the whole account failed, every pass).
        (
            "error_message x_orderid_{n} order cancelled by merchant",
            (Outcome.FAILED, "order_error"),
        ),
        (
            "error_message x_orderid_{n} refunded to customer account",
            (Outcome.FAILED, "order_error"),
        ),
        (
            "error_message x_orderid_{n} awaiting client confirmation",
            (Outcome.FAILED, "order_error"),
        ),
        ("error_message x_orderid_{n} accounting hold", (Outcome.FAILED, "order_error")),
        # Words between `account` and a state word that is the order's, not the account's.
        (
            "error_message x_orderid_{n} refunded to customer account then order closed",
            (Outcome.FAILED, "order_error"),
        ),
        (
            "error_message x_orderid_{n} customer account is not suspended",
            (Outcome.FAILED, "order_error"),
        ),
        (
            "error_message x_orderid_{n} refunded to customer account and closed",
            (Outcome.FAILED, "order_error"),
        ),
        (
            "error_message x_orderid_{n} refund to account already closed",
            (Outcome.FAILED, "order_error"),
        ),
    ],
)
async def test_one_orders_bad_line_fails_that_order_and_the_others_are_read(
    fake: LinesFake, line: str, outcome: tuple[Outcome, str | None]
) -> None:
    fake.line_for[B] = line
    seen = await query(fake, [A, B, C])
    assert said(seen) == {
        A: (Outcome.OK, "mark_shipped"),
        B: outcome,
        C: (Outcome.OK, "completed"),
    }
    assert fake.batch_sizes == [3]  # read from the one answer


@pytest.mark.parametrize(
    ("line", "error"),
    [
        # The account's, whatever order it names.
        ("error_message x_orderid_{n} system down for maintenance", SourceUnavailable),
        ("error_message x_orderid_{n} invalid login", AuthenticationFailed),
        # About the account or our post, whichever order's field it names.
        ("error_message x_orderid_{n} account suspended", SourceUnavailable),
        ("error_message x_orderid_{n} account has been suspended", SourceUnavailable),
        ("error_message x_orderid_{n} Account is currently suspended", SourceUnavailable),
        ("error_message x_orderid_{n} account temporarily disabled", SourceUnavailable),
        ("error_message x_orderid_{n} merchant account is now closed", SourceUnavailable),
        ("error_message {id}: suspended merchant account", SourceUnavailable),
        # A `:` and any words between, up to three (were each order's failed check).
        ("error_message x_orderid_{n} account: suspended", SourceUnavailable),
        ("error_message x_orderid_{n} account status: suspended", SourceUnavailable),
        ("error_message x_orderid_{n} account has been permanently closed", SourceUnavailable),
        ("error_message x_orderid_{n} account is not currently active", SourceUnavailable),
        ("error_message x_orderid_{n} merchant not active", SourceUnavailable),
        ("error_message x_orderid_{n}: Account is disabled", SourceUnavailable),
        ("error_message {id} merchant account suspended", SourceUnavailable),
        ("error_message x_orderid_{n} bad client id", AuthenticationFailed),
        ("error_message x_action_{n} unknown action", SourceUnavailable),
        ("error_message x_action_{n}: invalid action query", SourceUnavailable),
        ("error_message x_orderid_1 x_orderid_2 invalid", SourceUnavailable),  # whose?
        ("error_message invalid order number", SourceUnavailable),  # none named
    ],
)
async def test_an_error_line_about_more_than_one_order_is_still_the_answers(
    fake: LinesFake, line: str, error: type[Exception]
) -> None:
    fake.line_for[B] = line
    with pytest.raises(error):
        await query(fake, [A, B])


async def test_an_answer_with_a_line_no_order_owns_is_asked_again_in_halves(
    fake: LinesFake,
) -> None:
    fake.stray[B] = "<<< mark_shipped"  # CCNow's words all the same: its other lines read
    seen = await query(fake, [A, B, C, D])
    assert said(seen) == {
        A: (Outcome.OK, "mark_shipped"),
        B: (Outcome.FAILED, "protocol"),
        C: (Outcome.OK, "completed"),
        D: (Outcome.OK, "pending"),
    }
    # The batch, its halves (level by level), and the half with B in two: each order decided
    # in this pass.
    assert fake.batch_sizes == [4, 2, 2, 1, 1]


async def test_a_line_in_every_answer_is_the_account_s_noise_and_every_order_reads(
    fake: LinesFake,
) -> None:
    fake.extra_lines = ["<<<"]  # on every answer, one order's too
    ids = [f"600-00-{1000 + i}" for i in range(24)]
    fake.orders = dict.fromkeys(ids, "pending")
    seen = await query(fake, ids, batch_size=4, concurrency=1)
    assert said(seen) == dict.fromkeys(ids, (Outcome.OK, "pending"))
    # The first batch, its halves (each holding the line, as the batch did) and the first
    # order of one alone (its line and that line): the account's noise, each answer holding
    # it alone then read; the other batches one post each. Was: each batch asked down to every
    # order alone (each failing `protocol`), the breaker open at the third of six batches.
    assert fake.batch_sizes == [4, 2, 2, 1, *[4] * 5]


async def test_a_line_in_every_answer_of_several_orders_asks_a_bounded_number_of_parts(
    fake: LinesFake, caplog: pytest.LogCaptureFixture
) -> None:
    # Was: each batch asked down to every order alone, 196 posts a pass for 100 orders (3,980
    # for 2,000), all in the account's gate with its action posts, and no breaker opening.
    ids = [f"600-00-{1000 + i}" for i in range(32)]
    fake.orders = {i: "pending" for i in ids}
    fake.stray_in_several = "total 8"
    with caplog.at_level(logging.WARNING, "reconciler.sources.ccnow"):
        seen = await query(fake, ids, batch_size=16, concurrency=1)
    # Each batch, then its parts level by level within its bound (FOUND_ORDERS shares of 8
    # posts, 24): 10 orders read alone; the 6 not asked are not failed, nothing was said of
    # them (asked at the next poll).
    # The first pair of halves, each holding the line as the batch did: its first order asked
    # alone, once, answering no such line (no noise, `ccnow.answer_noise`).
    parts = [*[4] * 4, *[2] * 8, *[1] * 10]
    assert fake.batch_sizes == [16, 8, 8, 1, *parts, 16, 8, 8, *parts]
    read = [*ids[0:10], *ids[16:26]]
    assert said(seen) == dict.fromkeys(read, (Outcome.OK, "pending"))
    warned = [r for r in caplog.records if r.msg == "ccnow.batches_split"]
    assert [(r.levelname, r.fields) for r in warned] == [  # type: ignore[attr-defined]
        ("WARNING", {"account": "default", "batches": 2, "posts": 48, "unasked": 12, "missing": 0})
    ]


async def test_a_line_in_every_answer_of_several_orders_opens_the_breaker(
    fake: LinesFake, caplog: pytest.LogCaptureFixture
) -> None:
    # Was (before 3d29000): each batch asked in parts to its own bound, pass after pass (880
    # posts a pass for 2,000 orders in batches of 25, 84% of them never asked), the account
    # healthy: the parts that answered ended the breaker's run before the batch counted in it.
    ids = [f"600-00-{1000 + i}" for i in range(40)]
    fake.orders = {i: "pending" for i in ids}
    fake.stray_in_several = "total 4"
    with (
        caplog.at_level(logging.WARNING, "reconciler.sources.ccnow"),
        pytest.raises(SourceUnavailable, match="3 batches failed in a row"),
    ):
        seen: dict[str, Observation] = {}

        async def emit(observation: Observation) -> None:
            seen[observation.key.order_id] = observation

        async with aiohttp.ClientSession() as session:
            client = CCNowClient(ccnow_config(fake.url, batch_size=4, concurrency=1), session)
            await client.query(ids, emit)
    # Three batches asked level by level (6 posts each, a share more as CCNow's answers name
    # the orders asked), each order read alone only, no part of several orders: the breaker
    # opens all the same.
    # (and the first batch's first order alone, once: its answer holds no such line, no noise)
    assert fake.batch_sizes == [4, 2, 2, 1, 1, 1, 1, 1] + [4, 2, 2, 1, 1, 1, 1] * 2
    assert said(seen) == dict.fromkeys(ids[:12], (Outcome.OK, "pending"))
    warned = [r for r in caplog.records if r.msg == "ccnow.batches_split"]
    assert [r.fields for r in warned] == [  # type: ignore[attr-defined]
        {"account": "default", "batches": 3, "posts": 18, "unasked": 0, "missing": 0}
    ]


@pytest.mark.parametrize(("orders", "every"), [(100, 25), (2000, 100)])
async def test_one_odd_order_a_batch_fails_that_order_alone_batch_after_batch(
    fake: LinesFake, orders: int, every: int
) -> None:
    # Was (3d29000): finding each odd order took its batch's 10 posts, past the pass's
    # max(30, batches): the whole account failed every pass (4 odd orders of 100, 20 of 2,000).
    ids = [f"600-{i // 10000:02d}-{i % 10000:04d}" for i in range(orders)]
    fake.orders = {i: "pending" for i in ids}
    odd = ids[3::every]
    fake.stray = {i: "total 4" for i in odd}
    seen = await query(fake, ids, batch_size=25, concurrency=1)
    assert said(seen) == {
        i: (Outcome.FAILED, "protocol") if i in odd else (Outcome.OK, "pending") for i in ids
    }


async def test_a_line_in_every_answer_of_several_orders_is_one_source_failed(
    tmp_path: Path, fake: LinesFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    ids = [f"600-00-{1000 + i}" for i in range(200)]
    fake.orders = {i: "on_hold" for i in ids}  # not on the pending list: queried
    fake.stray_in_several = "total 25"
    async with ccnow_coordinator(tmp_path, fake, 2.0) as (coordinator, clock):
        await coordinator.store.orders.track(
            "ccnow", "default", [(i, None) for i in ids], clock.now
        )
        for _ in range(3):
            await coordinator.full_pass(via="catch-up")
            clock.now += 600
        events = await coordinator.store.events.history()
        state = await coordinator.store.sources.state("ccnow", "default")
    failed = [e for e in events if e.order_id is None]
    assert [e.type for e in failed] == ["source.failed"]
    assert b"4 batches failed in a row" in failed[0].body  # concurrency 2: 4 at least
    # Each catch-up: the list, four batches of 25 each with its parts (level by level, its
    # FOUND_ORDERS shares of 10 posts, as CCNow's answers name the orders asked: 20 odd orders
    # first read no part before the last levels either), and a batch the other worker asked
    # as the breaker opened; was 89 posts, every pass, before the bound of a batch's parts.
    passes = "".join("|" if n == 0 else "." for n in fake.batch_sizes).split("|")[1:]
    bound = 5 * (1 + FOUND_ORDERS * Split.posts(25)) + 1  # one order alone: noise?
    assert len(passes) == 3 and all(len(p) <= bound for p in passes), fake.batch_sizes
    assert state.failing


async def test_a_page_is_not_asked_again_in_parts(fake: LinesFake) -> None:
    fake.queries = Reply(200, "<html><body>Login</body></html>\n", content_type="text/html")
    with pytest.raises(ProtocolError):
        await query(fake, [A, B, C, D])
    assert fake.batch_sizes == [4]


async def test_a_framed_answer_whose_last_status_word_is_cut_asks_that_order_alone(
    fake: LinesFake, caplog: pytest.LogCaptureFixture
) -> None:
    # Framed by its Content-Length, no final line end: `pendi` is no status CCNow has.
    fake.script = [Reply(200, f"{A} mark_shipped\n{D} pendi")]
    with caplog.at_level(logging.WARNING, "reconciler.sources.ccnow"):
        seen = await query(fake, [A, D])
    assert said(seen) == {A: (Outcome.OK, "mark_shipped"), D: (Outcome.OK, "pending")}
    assert fake.batch_sizes == [2, 1]
    assert caplog.records == []


@pytest.mark.parametrize(
    ("last", "chunked"), [("complete", False), ("pendi", False), ("PEND", False), ("pend", True)]
)
async def test_a_last_word_that_starts_a_documented_one_is_no_status_when_it_comes_again(
    fake: LinesFake, caplog: pytest.LogCaptureFixture, last: str, chunked: bool
) -> None:
    # `complete` is no word of the document's, and the start of `completed`; `pendi` is a
    # script dying at the same byte. Was: read as the status `pendi` (`pending -> pendi` and
    # back); before that, the whole batch asked again three times, every pass.
    fake.always = Reply(200, f"{A} mark_shipped\n{D} {last}", chunked=chunked)
    with caplog.at_level(logging.WARNING, "reconciler.sources.ccnow"):
        seen = await query(fake, [A, D])
    assert said(seen) == {A: (Outcome.OK, "mark_shipped"), D: (Outcome.FAILED, "truncated_answer")}
    assert fake.batch_sizes == [2, 1]
    assert [r.fields["order_id"] for r in caplog.records] == [D]  # type: ignore[attr-defined]


@pytest.mark.parametrize("last", ["pending", "PENDING", "on_hold", "pending 2026-11-30"])
async def test_a_framed_answer_without_a_final_line_end_is_otherwise_whole(
    fake: LinesFake, last: str
) -> None:
    fake.script = [Reply(200, f"{A} mark_shipped\n{D} {last}")]
    seen = await query(fake, [A, D])
    assert seen[D].outcome is Outcome.OK
    assert seen[D].status == ("on_hold" if last == "on_hold" else "pending")
    assert fake.batch_sizes == [2]


async def test_an_unreadable_line_of_the_pending_list_hides_no_other_order(
    fake: LinesFake, caplog: pytest.LogCaptureFixture
) -> None:
    fake.orders = {A: "pending", B: "pending"}
    fake.extra_lines = ["5000000050 pending"]  # ten digits: no order id
    async with aiohttp.ClientSession() as session:
        client = CCNowClient(ccnow_config(fake.url), session)
        with caplog.at_level(logging.WARNING, "reconciler.sources.ccnow"):
            listed = await client.pending_list()
        assert {o.key.order_id: o.status for o in listed} == {A: "pending", B: "pending"}
        warned = [r for r in caplog.records if r.msg == "ccnow.pending_lines_unreadable"]
        assert [r.fields["count"] for r in warned] == [1]  # type: ignore[attr-defined]
        # Also when the list's last line is undecided (chunked, no line end): its order is
        # asked alone, and the unreadable line is still warned of (was: the warning was lost).
        caplog.clear()
        fake.extra_lines = []
        fake.script = [Reply(200, f"{A} pending\n5000000050 pending\n{B} pending", chunked=True)]
        with caplog.at_level(logging.WARNING, "reconciler.sources.ccnow"):
            listed = await client.pending_list()
        assert {o.key.order_id: o.status for o in listed} == {A: "pending", B: "pending"}
        warned = [r for r in caplog.records if r.msg == "ccnow.pending_lines_unreadable"]
        assert [r.fields["count"] for r in warned] == [1]  # type: ignore[attr-defined]
        assert fake.batch_sizes[-2:] == [0, 1]
        # A list of nothing but such lines is no list.
        fake.orders = {}
        fake.always = Reply(200, "5000000050 pending\n")
        with pytest.raises(ProtocolError, match="not an answer line"):
            await client.pending_list()


async def test_one_orders_bad_line_neither_fails_the_account_nor_flaps_it(
    tmp_path: Path, fake: LinesFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    fake.line_for[B] = "{id}: mark_shipped"
    fake.line_for[C] = "error_message x_orderid_{n} invalid order number {id}"
    async with ccnow_coordinator(tmp_path, fake, 2.0) as (coordinator, clock):
        await coordinator.store.orders.track(
            "ccnow", "default", [(A, None), (B, None), (C, None)], clock.now
        )
        for _ in range(12):  # catch-up, then polls and due checks over two hours
            await coordinator.full_pass(via="catch-up")
            clock.now += 600
            await coordinator.tick_pending_list()
            await coordinator.tick_due()
        events = await coordinator.store.events.history()
        state = await coordinator.store.sources.state("ccnow", "default")
        keys = [OrderKey("ccnow", "default", i) for i in (A, B, C)]
        orders = {k.order_id: s for k, s in (await coordinator.store.orders.load(keys)).items()}
    # Before: `source.failed` at the first batch, `source.recovered` at the probe, again and
    # again.
    assert [e.type for e in events if e.order_id is None] == []
    assert not state.failing
    assert orders[A].status == "mark_shipped"
    assert orders[B].status is None and orders[B].failure_streak > 0


@pytest.mark.parametrize("batch_size", [32, 100])
async def test_a_batch_whose_posts_decide_none_of_its_orders_fails_those_not_asked(
    fake: LinesFake, batch_size: int
) -> None:
    # A line in every answer of several orders, batches of 32 to 100: the parts of several
    # orders fill every post of a batch asked level by level (30 for 32: its halves, then 4, 8
    # and 16 parts of two; 42 for 100), none reads. Was: nothing said of any order, the parts
    # not asked carried to the next poll, which asked the same parts again: the orders never
    # checked, pass after pass, no check failing and no account either, 31 or 43 posts a
    # batch every poll. Such a batch's orders not asked now fail their checks (`protocol`),
    # as a batch halved for a 5xx does: the next poll asks others, at their backoff they are
    # asked again.
    ids = [f"600-00-{1000 + i}" for i in range(batch_size)]
    fake.orders = dict.fromkeys(ids, "pending")
    fake.stray_in_several = "total 8"
    seen = await query(fake, ids, batch_size=batch_size, concurrency=1)
    # and the first order alone, whether the line is noise (it is not: none in its answer)
    assert len(fake.batch_sizes) == 2 + FOUND_ORDERS * Split.posts(batch_size)
    assert fake.batch_sizes[3] == 1 and all(size > 1 for size in fake.batch_sizes[4:])
    assert said(seen) == dict.fromkeys(ids, (Outcome.FAILED, "protocol"))


async def test_odd_orders_answering_do_not_hide_an_outage_of_the_other_batches(
    fake: LinesFake,
) -> None:
    # The first batch's orders each answer with a line that cannot be read (CCNow's program
    # answering about them, found alone, `protocol`); the second batch gets 503s (CCNow busy
    # or going down), and no batch read. Was: the odd orders' answers told the probe the
    # account answers, asking nothing, and the second batch's 503s were written as those
    # orders' own failures, the account healthy. The probe now asks another order for them;
    # that failing too, the account fails, as it did before odd orders were told apart.
    ids = [f"600-00-{1000 + i}" for i in range(8)]
    fake.orders = dict.fromkeys(ids, "pending")
    fake.stray = dict.fromkeys(ids[:4], "total 4")
    fake.replies_for = dict.fromkeys(ids[4:], Reply(503, "busy"))
    probed: list[bool] = []

    async def probe(
        asked: object, *, lists: bool = True, read: object = (), spoke: bool = False
    ) -> Said:
        probed.append(spoke)
        return Said.ANSWERS if spoke else Said.FAILS  # the coordinator's answer (`_answers`)

    seen: dict[str, Observation] = {}

    async def emit(observation: Observation) -> None:
        seen[observation.key.order_id] = observation

    async with aiohttp.ClientSession() as session:
        client = CCNowClient(ccnow_config(fake.url, batch_size=4, concurrency=1), session)
        with pytest.raises(SourceError):
            await client.query(ids, emit, probe=probe)
    assert probed == [False]
    assert seen == {}
