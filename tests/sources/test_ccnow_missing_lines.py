"""Brief n53 (probe 34): a CCNow answer that was read but held no line for some asked orders
failed each of them `missing`, pass after pass, never asked again: a CCNow that stops at a bad
id failed 13 healthy orders of 14 (and the account, `every check failed (missing)`), one that
answers at most 10 lines a post failed the same 4 orders of every batch of 14 for ever
(DESIGN.md invariant 7). Those orders are now asked again in this pass, in a post of their own,
within the batch's posts (`Split`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import OrderKey, Outcome, normalize_ccnow_id
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_batches import FOUND_ORDERS
from reconciler.sources.errors import SourceUnavailable
from tests.conftest import ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, Reply, ccnow_config
from tests.sources.test_ccnow import Collector, RawServer, chunked, ok
from tests.sources.test_ccnow_batch_lines import LinesFake, query, said


def orders(count: int) -> list[str]:
    return [f"910-00-{i:04d}" for i in range(1, count + 1)]


def bound(batches: int, size: int) -> int:
    """A pass's posts, documented (Split): each batch's post and its shares."""
    return batches * (1 + FOUND_ORDERS * 2 * math.ceil(math.log2(size)))


class StopsAtBadId(LinesFake):
    """A CCNow that stops at an order it cannot answer: a post naming `bad` is answered that
    order's error line alone (`only`, probe 34), or the lines before it and its own."""

    def __init__(self, bad: str, *, only: bool, words: str = "not found") -> None:
        super().__init__()
        self.bad = bad
        self.only = only
        self.words = words

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        lines = super()._lines(ids, form)
        named = [normalize_ccnow_id(i) for i in ids]
        if self.bad not in named:
            return lines
        own = f"{self.bad} error_message {self.words}"
        return [own] if self.only else [*lines[: named.index(self.bad)], own]


class AtMost(LinesFake):
    """A CCNow that answers at most `most` lines a post, the first ones."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        return super()._lines(ids, form)[: self.most]


@pytest.mark.parametrize(("at", "only"), [(1, True), (1, False), (7, True), (7, False), (13, True)])
async def test_orders_after_a_bad_id_ccnow_stopped_at_are_read(only: bool, at: int) -> None:
    ids = orders(28)
    async with StopsAtBadId(ids[at], only=only) as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        seen = said(await query(fake, ids, batch_size=14, concurrency=1))
        posts = fake.batch_sizes
    # Was: 13 healthy orders of the first batch (only) failed `missing`, never asked again.
    assert seen == {
        i: (Outcome.NOT_FOUND, None) if i == ids[at] else (Outcome.OK, "pending") for i in ids
    }
    assert posts[0] == 14 and posts[-1] == 14
    assert len(posts) <= bound(2, 14)


@pytest.mark.parametrize(("most", "size", "asked"), [(10, 14, [14, 4]), (10, 25, [25, 15, 5])])
async def test_orders_past_the_lines_ccnow_answers_a_post_are_read(
    most: int, size: int, asked: list[int]
) -> None:
    ids = orders(3 * size)
    async with AtMost(most) as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        seen = said(await query(fake, ids, batch_size=size, concurrency=1))
        posts = fake.batch_sizes
    # Was: the same size - 10 orders of every batch failed `missing`, every pass.
    assert seen == dict.fromkeys(ids, (Outcome.OK, "pending"))
    assert posts == asked * 3
    assert len(posts) <= bound(3, size)


async def test_one_line_a_post_reads_the_posts_of_a_batch_and_fails_the_rest_missing() -> None:
    ids = orders(25)
    async with AtMost(1) as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        seen = said(await query(fake, ids, batch_size=25, concurrency=1))
        posts = fake.batch_sizes
    # One share of 2*ceil(log2 25) = 10 posts more: 11 orders read, the others `missing`.
    assert posts == [25, *range(24, 14, -1)]
    assert seen == {
        i: (Outcome.OK, "pending") if n < 11 else (Outcome.FAILED, "missing")
        for n, i in enumerate(ids)
    }


async def test_an_order_left_out_when_asked_alone_fails_missing_alone() -> None:
    ids = orders(6)
    async with LinesFake() as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        fake.omit = {ids[2], ids[4]}
        seen = said(await query(fake, ids, batch_size=6, concurrency=1))
        posts = fake.batch_sizes
    # Asked again together, no line either: CCNow stopped at one of them, and the lines read
    # came in no order that says which (brief n72: the first was blamed), so each is asked
    # alone, left out again (brief n61: was [6, 2], the rest all failed).
    assert posts == [6, 2, 1, 1]
    assert seen == {
        i: (Outcome.FAILED, "missing") if i in fake.omit else (Outcome.OK, "pending") for i in ids
    }


async def test_orders_after_a_cut_last_line_are_asked_again_and_the_cut_one_alone() -> None:
    x, y, z = "123-45-6789", "111-11-1111", "222-22-2222"
    answers = [
        chunked(f"{y} pending\n{x} canceled".encode()),  # cut: z's line never came
        chunked(f"{x} canceled_tmp\n".encode()),  # x alone decides it
        chunked(f"{z} completed\n".encode()),  # z asked again
    ]
    async with RawServer(answers) as server, aiohttp.ClientSession() as session:
        emit = Collector()
        await CCNowClient(ccnow_config(server.url), session).query([y, x, z], emit)
        requests = server.requests
    # Was: z failed `missing` (2 posts).
    assert emit.by_id() == {y: ok(y, "pending"), x: ok(x, "canceled_tmp"), z: ok(z, "completed")}
    assert requests == 3


async def test_zero_order_lines_to_every_post_fail_every_order_missing_as_before() -> None:
    ids = orders(28)
    async with LinesFake() as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        fake.queries = Reply(200, "message no_pending_orders\n")
        seen = said(await query(fake, ids, batch_size=14, concurrency=1))
        posts = fake.batch_sizes
    # The others asked once more (a bad id first? brief n67), none again; the halves (a bad
    # id first in CCNow's own order? brief n1), none either: the next batch is not halved.
    assert posts == [14, 13, 7, 7, 14, 13]
    assert seen == dict.fromkeys(ids, (Outcome.FAILED, "missing"))


@pytest.mark.parametrize("zero", [False, True])
async def test_a_catch_up_reads_the_orders_a_bad_id_hid_and_fails_an_account_that_answers_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zero: bool
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    ids = orders(14)
    async with StopsAtBadId(ids[1], only=True, words="database busy") as fake:
        fake.orders = dict.fromkeys(ids, "on_hold")  # not on the pending list: queried
        if zero:
            fake.queries = Reply(200, "message no_pending_orders\n")
        async with ccnow_coordinator(tmp_path, fake, 2.0) as (coordinator, clock):
            await coordinator.store.orders.track(
                "ccnow", "default", [(i, None) for i in ids], clock.now
            )
            await coordinator.full_pass(via="catch-up")
            events = await coordinator.store.events.history()
            state = await coordinator.store.sources.state("ccnow", "default")
            keys = [OrderKey("ccnow", "default", i) for i in ids]
            stored = {k.order_id: s for k, s in (await coordinator.store.orders.load(keys)).items()}
    account = [e.type for e in events if e.order_id is None]
    if zero:
        # As before: every check failed, the account with it.
        assert state.failing and state.last_error == "every check failed (missing)"
        assert account == ["source.failed"]
    else:
        # Was: source.failed, `every check failed (missing)`, a catch-up exiting 75.
        assert account == [] and not state.failing
        assert {i: s.status for i, s in stored.items()} == {
            i: None if i == ids[1] else "on_hold" for i in ids
        }


# --- brief n61 (review 29d of efefcf3) ----------------------------------------------------


class StopsSilently(LinesFake):
    """A CCNow that answers a post's lines in order and stops silently at a `bad` id: the lines
    before it, none for it or after (`nothing`, when there are none before it)."""

    def __init__(self, bad: set[str], nothing: str = "") -> None:
        super().__init__()
        self.bad = bad
        self.nothing = nothing

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        lines = super()._lines(ids, form)
        named = [normalize_ccnow_id(i) for i in ids]
        stop = next((n for n, i in enumerate(named) if i in self.bad), len(named))
        return lines[:stop] or ([self.nothing] if self.nothing else [])


@pytest.mark.parametrize("nothing", ["", "message no_pending_orders"])
@pytest.mark.parametrize(
    ("at", "asked"),
    [((3,), [25, 22, 21]), ((3, 10), [25, 22, 21, 15, 14]), ((3, 23, 24), [25, 22, 21, 2, 1])],
)
async def test_only_the_bad_id_ccnow_stops_at_silently_fails(
    at: tuple[int, ...], asked: list[int], nothing: str
) -> None:
    ids = orders(100)
    bad = {ids[b + n] for b in range(0, 100, 25) for n in at}
    async with StopsSilently(bad, nothing) as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        seen = said(await query(fake, ids, batch_size=25, concurrency=1))
        posts = fake.batch_sizes
    # Was: every order after the bad id failed `missing` (22 of 25 a batch), pass after pass,
    # the asked-again post answered nothing at all. Now the first one asked again fails (the
    # one CCNow stopped at), the others are asked again.
    assert seen == {
        i: (Outcome.FAILED, "missing") if i in bad else (Outcome.OK, "pending") for i in ids
    }
    assert posts == asked * 4
    assert len(posts) <= bound(4, 25)


class DiesAtTheSameByte(LinesFake):
    """A CGI that dies at the same byte of every answer, mid-way through its first line, its
    web server ending the chunked answer cleanly."""

    def _text(self, lines: list[str]) -> Reply:
        return Reply(200, "\n".join(lines)[:16], chunked=True)


async def test_an_answer_of_a_cut_line_alone_asks_nothing_again() -> None:
    ids = orders(28)
    async with DiesAtTheSameByte() as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        seen = said(await query(fake, ids, batch_size=14, concurrency=1))
        posts = fake.batch_sizes
    # `910-00-0001 pend`: that order asked alone, cut again; the others no line. Was: each
    # batch's others asked again, one cut line a post (9 posts and 9 cut orders a batch).
    assert posts == [14, 1] * 2
    firsts = {ids[0], ids[14]}
    assert seen == {
        i: (Outcome.FAILED, "truncated_answer" if i in firsts else "missing") for i in ids
    }


class Scripted(LinesFake):
    """A CCNow answering the posts of `lines_of` (the ids asked, in order) their lines."""

    def __init__(self, lines_of: dict[tuple[str, ...], list[str]]) -> None:
        super().__init__()
        self.lines_of = lines_of

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        scripted = self.lines_of.get(tuple(map(normalize_ccnow_id, ids)))
        return super()._lines(ids, form) if scripted is None else scripted


async def test_an_empty_answer_to_a_half_of_orders_asked_again_leaves_them_out() -> None:
    ids = orders(5)
    one, two, three, four, five = ids
    script = {
        tuple(ids): [f"{one} pending", f"{two} pending"],  # stops at 3
        (three, four, five): [f"{four} pending", "total 3", f"{five} pending"],  # unreadable
        (three,): [],  # halved: the half of 3 alone answered nothing
    }
    async with Scripted(script) as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        seen = said(await query(fake, ids, batch_size=5, concurrency=1))
        posts = fake.batch_sizes
    assert posts == [5, 3, 1, 2]
    # Was: `protocol` (the halves were no longer asked again), `missing` asked whole.
    assert seen == {
        i: (Outcome.FAILED, "missing") if i == three else (Outcome.OK, "pending") for i in ids
    }


async def test_the_pass_counts_each_order_asked_again_once_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids = orders(25)
    async with AtMost(1) as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        with caplog.at_level(logging.INFO, "reconciler.sources.ccnow"):
            await query(fake, ids, batch_size=25, concurrency=1)
    logged = [r for r in caplog.records if r.msg == "ccnow.batches_split"]
    # Was: `missing` 195 (24 + 23 + ... + 15 asks) for 24 orders, and a WARNING.
    assert [(r.levelname, r.fields) for r in logged] == [  # type: ignore[attr-defined]
        ("INFO", {"account": "default", "batches": 1, "posts": 10, "unasked": 0, "missing": 24})
    ]


async def test_one_order_left_out_a_batch_logs_at_info_each_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids = orders(50)
    async with LinesFake() as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        fake.omit = {ids[4], ids[30]}
        with caplog.at_level(logging.INFO, "reconciler.sources.ccnow"):
            seen = said(await query(fake, ids, batch_size=25, concurrency=1))
    logged = [r for r in caplog.records if r.msg == "ccnow.batches_split"]
    # Was: a WARNING every pass of a healthy account whose CCNow leaves an order out.
    assert [(r.levelname, r.fields) for r in logged] == [  # type: ignore[attr-defined]
        ("INFO", {"account": "default", "batches": 2, "posts": 2, "unasked": 0, "missing": 2})
    ]
    assert [i for i, s in seen.items() if s != (Outcome.OK, "pending")] == [ids[4], ids[30]]


# --- brief n67 (review 29j of 365b48d) ----------------------------------------------------


@pytest.mark.parametrize("nothing", ["", "message no_pending_orders"])
@pytest.mark.parametrize(("at", "asked"), [((0,), [25, 24]), ((0, 5), [25, 24, 20, 19])])
async def test_a_bad_id_first_in_a_batch_fails_alone(
    at: tuple[int, ...], asked: list[int], nothing: str
) -> None:
    ids = orders(100)
    bad = {ids[b + n] for b in range(0, 100, 25) for n in at}
    async with StopsSilently(bad, nothing) as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        seen = said(await query(fake, ids, batch_size=25, concurrency=1))
        posts = fake.batch_sizes
    # Was: the batch's post answered nothing: `SourceUnavailable: 3 batches failed in a row`
    # (empty), or its 24 healthy orders failed `missing` every pass (no_pending_orders).
    assert seen == {
        i: (Outcome.FAILED, "missing") if i in bad else (Outcome.OK, "pending") for i in ids
    }
    assert posts == asked * 4
    assert len(posts) <= bound(4, 25)


async def test_empty_answers_to_every_post_still_open_the_breaker() -> None:
    ids = orders(100)
    async with LinesFake() as fake:
        fake.orders = dict.fromkeys(ids, "pending")
        fake.queries = Reply(200, "")
        with pytest.raises(SourceUnavailable, match="3 batches failed in a row"):
            await query(fake, ids, batch_size=25, concurrency=1)
        posts = fake.batch_sizes
    # The others asked once more, empty again: each batch fails as before, one post more,
    # and the first two more, its halves (brief n1).
    assert posts == [25, 24, 12, 13, 25, 24, 25, 24]


# --- brief n72 (probe 39) -----------------------------------------------------------------


class StopsInItsOwnOrder(LinesFake):
    """A CCNow that answers a post's orders in its own order (`key`: by id, descending or
    not; NOTES allows another order than asked) and stops silently at a `bad` id."""

    def __init__(self, bad: str, *, descending: bool) -> None:
        super().__init__()
        self.bad = bad
        self.descending = descending

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        lines = []
        for order_id in sorted(map(normalize_ccnow_id, ids), reverse=self.descending):
            if order_id == self.bad:
                break
            lines += super()._lines([order_id], form)
        return lines


@pytest.mark.parametrize(
    ("at", "descending"),
    # First in CCNow's own order too (ids[15] descending, ids[0] ascending): the batch's
    # post reads none, nor its others asked once more (`others`), and its halves are asked
    # (brief n1; was: the batch failed whole).
    [(at, d) for at in (2, 5, 10) for d in (False, True)]
    + [(0, True), (15, False), (15, True), (0, False)],
)
async def test_the_bad_id_ccnow_stops_at_in_its_own_order_fails_alone(
    at: int, descending: bool
) -> None:
    ids = orders(16)
    asked = ids[8:] + ids[:8]  # not in the order CCNow answers in
    async with StopsInItsOwnOrder(ids[at], descending=descending) as fake:
        fake.orders = dict.fromkeys(ids, "processing")
        seen = said(await query(fake, asked, batch_size=16, concurrency=1))
        posts = fake.batch_sizes
    # Was: the first order asked of those left out failed `missing`, one a post, pass after
    # pass: healthy orders whose changes were never seen.
    assert seen == {
        i: (Outcome.FAILED, "missing") if i == ids[at] else (Outcome.OK, "processing") for i in ids
    }
    assert len(posts) <= bound(1, 16)
