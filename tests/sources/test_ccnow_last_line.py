"""A chunked CCNow answer without its final line end (probe 12, 1 and 2): every line but the
last counts as usual; the last line's order alone is undecided, asked again at once, alone, and
the second answer decides it when it is whole or repeats the line exactly; else that order
alone fails this pass (README, "No false events")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.sources.ccnow import CCNowClient
from tests.conftest import call_cli
from tests.fake_providers import STAMPED, FakeCCNow, Reply, ccnow_config
from tests.sources.test_ccnow import Collector, RawServer, chunked, failed, ok, with_length
from tests.sources.test_ccnow_batch_lines import query, said
from tests.writes.test_ccnow_actions import tracked
from tests.writes.test_ccnow_answers import changes

X, Y = "123-45-6789", "111-11-1111"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def not_found(order_id: str) -> Observation:
    return Observation(OrderKey("ccnow", "default", order_id), Outcome.NOT_FOUND, asked=STAMPED)


@pytest.mark.parametrize(
    ("second", "decided"),
    [
        # `canceled_tmp` cut to `canceled` read as the end state: never asked again.
        (chunked(f"{X} canceled_tmp\n".encode()), ok(X, "canceled_tmp")),
        (with_length(f"{X} canceled_tmp".encode(), 24), ok(X, "canceled_tmp")),
        # The same line again, at the same byte: a cut does not land twice there.
        (chunked(f"{X} canceled".encode()), ok(X, "canceled")),
        # Cut again, elsewhere: that order alone fails this pass.
        (chunked(f"{X} canceled_t".encode()), failed(X, "truncated_answer")),
    ],
)
async def test_the_last_line_s_order_is_asked_again_alone_and_decided(
    session: aiohttp.ClientSession, second: bytes, decided: Observation
) -> None:
    first = chunked(f"{Y} pending\n{X} canceled".encode())
    async with RawServer([first, second]) as server:
        emit = Collector()
        await CCNowClient(ccnow_config(server.url), session).query([Y, X], emit)
        assert emit.seen == [ok(Y, "pending"), decided]
        assert server.requests == 2


@pytest.mark.parametrize(
    ("last", "decided"),
    [
        (f"{X} not_found", not_found(X)),
        (f"{X} on_hold_review", ok(X, "on_hold_review")),
        (f"{X} error_message order locked", failed(X, "order_error")),
    ],
)
async def test_one_last_line_without_its_line_end_fails_no_batch_nor_account(
    session: aiohttp.ClientSession, last: str, decided: Observation
) -> None:
    # Was: the whole batch "cut", every order failed, the account failed, every pass for ever.
    answer = chunked(f"{Y} pending\n{last}".encode())
    async with RawServer([answer, chunked(last.encode())]) as server:
        emit = Collector()
        await CCNowClient(ccnow_config(server.url), session).query([Y, X], emit)
        assert emit.seen == [ok(Y, "pending"), decided]
        assert server.requests == 2


async def test_the_pending_list_s_last_line_counts_once_its_order_is_asked(
    session: aiohttp.ClientSession,
) -> None:
    # `pending review` cut to `pending`: asked alone, the order says what it is.
    first = chunked(f"{Y} pending\n{X} pending".encode())
    async with RawServer([first, chunked(f"{X} pending review\n".encode())]) as server:
        client = CCNowClient(ccnow_config(server.url), session)
        assert await client.pending_list() == [ok(X, "pending review"), ok(Y, "pending")]
        assert server.requests == 2


async def test_a_pending_list_s_last_order_undecided_stays_as_it_was_with_its_check_failed(
    session: aiohttp.ClientSession,
) -> None:
    # Neither new nor pending on a cut line, nor gone from the list: listed, its check failed.
    first = chunked(f"{Y} pending\n{X} pend".encode())
    async with RawServer([first, chunked(f"{X} pendin".encode())]) as server:
        client = CCNowClient(ccnow_config(server.url), session)
        assert await client.pending_list() == [failed(X, "truncated_answer"), ok(Y, "pending")]
        assert server.requests == 2


async def test_a_list_cut_mid_id_is_still_a_cut_answer(session: aiohttp.ClientSession) -> None:
    whole = chunked(f"{Y} pending\n{X} pending\n".encode())
    async with RawServer([chunked(f"{Y} pending\n{X[:6]}".encode()), whole]) as server:
        client = CCNowClient(ccnow_config(server.url), session)
        assert await client.pending_list() == [ok(Y, "pending"), ok(X, "pending")]
        assert server.requests == 2  # retried as a dropped connection, as before


async def test_a_cut_end_state_word_ends_no_order(tmp_path: Path, fake_ccnow: FakeCCNow) -> None:
    fake_ccnow.orders = {X: "pending", Y: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, X, Y)
    fake_ccnow.script = [
        Reply(200, "message no_pending_orders\n"),
        Reply(200, f"{Y} pending\n{X} canceled", chunked=True),  # `canceled_tmp`, cut
        Reply(200, f"{X} canceled_tmp\n", chunked=True),
    ]
    result = await call_cli("--config", cfg, "catch-up", "--source", "ccnow")
    assert result.code == 0, result.stderr
    # Was `pending -> canceled`: an end state, never asked again, the order lost for good.
    assert changes(tmp_path) == [("pending", "canceled_tmp", "catch-up")]
    assert fake_ccnow.script == []


@pytest.mark.parametrize(
    ("listed", "again"),
    [
        ("123456789 pending", f"{X} pending"),  # the list without hyphens, the query with
        (f"{X}  pending", f"{X} pending"),  # two blanks
        (f"{X}\tpending", f"{X} pending"),  # a tab
        (f"{X} on  hold", f"{X}\ton hold"),
        (f"{X} PENDING", f"{X} pending"),  # the word in another case: the same word
        ("123456789 pending 2026-11-30", f"{X} pending"),  # a data column after the word
        (f"{X} pending\tUSD", f"{X} pending"),
    ],
)
async def test_the_same_line_written_otherwise_decides(
    session: aiohttp.ClientSession, listed: str, again: str
) -> None:
    # Was: the raw texts compared, the order's check failed `truncated_answer` on every poll.
    first = chunked(f"{Y} pending\n{listed}".encode())
    async with RawServer([first, chunked(again.encode())]) as server:
        client = CCNowClient(ccnow_config(server.url), session)
        status = " ".join(again.split()[1:])
        assert await client.pending_list() == [ok(X, status), ok(Y, "pending")]
        assert server.requests == 2


async def test_a_hyphenless_listed_order_cut_again_and_again_keeps_catch_up_at_0(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {X: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, X)
    for _ in range(2):  # every run: the list as CCNow's CGI writes it, the query as it answers
        fake_ccnow.script = [
            Reply(200, "123456789 pending", chunked=True),
            Reply(200, f"{X} pending", chunked=True),
        ]
        result = await call_cli("--config", cfg, "catch-up", "--source", "ccnow")
        assert result.code == 0, result.stderr  # was 75: the account failed, every run
        assert fake_ccnow.script == []
    assert changes(tmp_path) == []


@pytest.mark.parametrize(
    "first",
    [
        b"\xef\xbb\xbf\n" + X.encode() + b" pending",  # a byte order mark, a blank line
        b"\n\n" + X.encode() + b" pending",
        b"\xef\xbb\xbf" + X.encode() + b" pending",
    ],
)
async def test_an_answer_whose_one_line_is_undecided_asks_it_again(
    session: aiohttp.ClientSession, first: bytes
) -> None:
    # Was: the blank lines before it parsed alone, `empty answer`, the account failed.
    async with RawServer([chunked(first), chunked(f"{X} pending\n".encode())]) as server:
        client = CCNowClient(ccnow_config(server.url), session)
        assert await client.pending_list() == [ok(X, "pending")]
        assert server.requests == 2


# --- brief n72 (probe 39) -----------------------------------------------------------------


class CutAtAnId(FakeCCNow):
    """A CCNow whose CGI dies in its answer to a post of every order, at the same byte each
    time: the answer ends after `kept` lines and `tail` (the start of the next one)."""

    def __init__(self, every: int, kept: int, tail: str) -> None:
        super().__init__()
        self.every, self.kept, self.tail = every, kept, tail

    def _text(self, lines: list[str]) -> Reply:
        if len(lines) < self.every:
            return super()._text(lines)
        return Reply(200, "".join(f"{x}\n" for x in lines[: self.kept]) + self.tail, chunked=True)


@pytest.mark.parametrize(
    ("tail", "posts"),
    [
        # Cut just after a whole id: that order asked alone, the orders after it asked again.
        ("100-00-0005 ", [8, 1, 3]),
        ("100-00-0005", [8, 1, 3]),
        # Cut mid-id: the lines before it read, the orders left out asked again.
        ("100-00-", [8, 4]),
        ("1000000", [8, 4]),
    ],
)
async def test_an_answer_cut_at_an_id_reads_the_lines_before_it(
    tail: str, posts: list[int]
) -> None:
    ids = [f"100-00-{n:04d}" for n in range(1, 9)]
    async with CutAtAnId(len(ids), 4, tail) as fake:
        fake.orders = dict.fromkeys(ids, "processing")
        seen = said(await query(fake, ids, batch_size=8))
        asked = fake.batch_sizes
    # Was: a truncated answer, retried, the same again: the whole batch failed (and the
    # account with it, the only batch), the 4 lines read thrown away.
    assert seen == dict.fromkeys(ids, (Outcome.OK, "processing"))
    assert asked == posts


# --- review 30e (brief n79) -------------------------------------------------------------


CUT = (Outcome.FAILED, "truncated_answer")


class CutAtOrder(FakeCCNow):
    """A CCNow whose CGI dies just after `order`'s id, whatever the post: the lines before it,
    then its id and a blank, chunked."""

    def __init__(self, order: str) -> None:
        super().__init__()
        self.order = order

    def _text(self, lines: list[str]) -> Reply:
        at = next((n for n, x in enumerate(lines) if x.startswith(self.order)), None)
        if at is None:
            return super()._text(lines)
        return Reply(200, "".join(f"{x}\n" for x in lines[:at]) + f"{self.order} ", chunked=True)


async def test_a_line_cut_after_its_id_twice_is_a_truncated_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids = [f"100-00-{n:04d}" for n in range(1, 9)]
    async with CutAtOrder(ids[4]) as fake:
        fake.orders = dict.fromkeys(ids, "processing")
        seen = said(await query(fake, ids, batch_size=8))
    # Was: `order_error`, CCNow's own word (which also counts as the account answering), and
    # no warning.
    assert seen == {**dict.fromkeys(ids, (Outcome.OK, "processing")), ids[4]: CUT}
    cuts = [getattr(r, "fields", {}) for r in caplog.records if r.msg == "ccnow.answer_cut"]
    assert [f.get("reason") for f in cuts] == [
        "last line without its line end, again when asked again"
    ]
