"""A CCNow CGI that dies in the same order's id whatever the post, and last lines that read no
status twice (review 30i, brief n82): that order alone fails, the others are read, and a word
CCNow wrote is never taken for a cut."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import CCNOW_ID_PATTERN, OrderKey, Outcome
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_cut import ID_START
from tests.conftest import ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply, ccnow_config
from tests.poller.test_ccnow_lone_order import POLL_S, run, source_events
from tests.sources.test_ccnow import Collector, RawServer, chunked, failed
from tests.sources.test_ccnow_batch_lines import query, said

X, Y = "123-45-6789", "111-11-1111"
MISSING = (Outcome.FAILED, "missing")
READ = (Outcome.OK, "processing")


class CutInId(FakeCCNow):
    """A CCNow whose CGI dies in `order`'s id whatever the post: the lines before it, then the
    id's first 7 characters (`100-00-`), chunked."""

    def __init__(self, order: str) -> None:
        super().__init__()
        self.order = order

    def _text(self, lines: list[str]) -> Reply:
        at = next((n for n, x in enumerate(lines) if x.startswith(self.order)), None)
        if at is None:
            return super()._text(lines)
        return Reply(200, "".join(f"{x}\n" for x in lines[:at]) + self.order[:7], chunked=True)


@pytest.mark.parametrize("at", [0, 4])
async def test_an_order_always_cut_in_its_id_fails_alone(at: int) -> None:
    ids = [f"100-00-{n:04d}" for n in range(1, 9)]
    async with CutInId(ids[at]) as fake:
        fake.orders = dict.fromkeys(ids, "processing")
        seen = said(await query(fake, ids, batch_size=8))
    # Was (first): the batch failed truncated_answer after its retries, and the account with
    # it (the only batch); (5th) the 3 orders after it failed truncated_answer, their post of
    # their own starting with the cut line.
    assert seen == {**dict.fromkeys(ids, READ), ids[at]: MISSING}


@pytest.mark.parametrize("at", [0, 5])
async def test_the_daemon_reads_the_orders_around_one_always_cut_in_its_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    ids = [f"100-00-{n:04d}" for n in range(1, 17)]
    async with CutInId(ids[at]) as fake:
        fake.orders = dict.fromkeys(ids, "processing")
        async with ccnow_coordinator(tmp_path, fake, POLL_S) as (coordinator, clock):
            await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in ids], 0)
            report = await coordinator.full_pass(via="catch-up")
            await run(coordinator, clock, 600.0)
            events = await source_events(coordinator)
            keys = [OrderKey("ccnow", "default", i) for i in ids]
            states = await coordinator.store.orders.load(keys)
    # Was (first): source.failed / source.recovered all along (295 in 600 s), 14 orders
    # never read.
    assert report.failed == 1 and events == []
    assert {k.order_id for k, s in states.items() if s.status is None} == {ids[at]}


@pytest.mark.parametrize("last", [f"{X} pending (awaiting)", f"{X} mark_shipped."])
async def test_a_status_no_word_is_read_from_twice_is_ccnow_s_own(
    last: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The last line without its line end, the same again when asked alone: CCNow wrote it
    # (order_error), no cut. Was: truncated_answer with a ccnow.answer_cut warning every pass.
    answers = [chunked(f"{Y} pending\n{last}".encode()), chunked(last.encode())]
    async with aiohttp.ClientSession() as session, RawServer(answers) as server:
        emit = Collector()
        await CCNowClient(ccnow_config(server.url), session).query([Y, X], emit)
    assert failed(X, "order_error") in emit.seen
    assert not [r for r in caplog.records if r.msg == "ccnow.answer_cut"]


def test_id_start_is_what_the_model_s_ids_start_with() -> None:
    # Of the strings of digits and hyphens up to an id's length, ID_START takes every one that
    # starts an id of CCNOW_ID_PATTERN's and is no whole id (`100-00-`, `1000000`), and no
    # whole id.
    whole = re.compile(CCNOW_ID_PATTERN, re.ASCII)
    texts = ["".join(p) for n in range(1, 12) for p in itertools.product("1-", repeat=n)]
    ids = [t for t in texts if whole.fullmatch(t)]
    starts = {i[:n] for i in ids for n in range(1, len(i))} - set(ids)
    assert starts <= {t for t in texts if ID_START.fullmatch(t)}
    assert not any(ID_START.fullmatch(i) for i in ids)
    assert all(ID_START.fullmatch(x) for x in ["1", "123-", "100-00-", "1000000", "12345-678"])
    assert not any(ID_START.fullmatch(x) for x in ["123-45-6789", "-1", "12a", "123--"])
