"""A last line without its line end cut in the free text after a status word (`pending Refund
f` of `pending Refund failed`, which says an error and is kept whole): on a poll, asked again
and cut at another byte, it is another line (that order fails this pass), and on an action's
post a discount's or tracking upload's line so cut is no line for its order. Against a raw
server on 127.0.0.1 and the fake CCNow."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from reconciler.sources.ccnow import CCNowClient
from tests.fake_providers import FakeCCNow, Reply, ccnow_config
from tests.sources.test_ccnow import Collector, RawServer, chunked, failed, ok
from tests.writes.test_ccnow_actions import ARGS, A, ccnow, commands, tracked

X, Y = "123-45-6789", "111-11-1111"


@pytest.mark.parametrize(
    ("second", "decided"),
    [
        (chunked(f"{X} pending Refund fai".encode()), failed(X, "truncated_answer")),
        (chunked(f"{X} pending Refund failed\n".encode()), ok(X, "pending Refund failed")),
        (chunked(f"{X} pending Refund f".encode()), ok(X, "pending")),  # the same line again
        (chunked(f"{X} PENDING".encode()), ok(X, "pending")),  # no data: the same answer
    ],
)
async def test_a_poll_s_last_line_cut_in_its_data_is_asked_again(
    second: bytes, decided: object
) -> None:
    first = chunked(f"{Y} pending\n{X} pending Refund f".encode())
    async with aiohttp.ClientSession() as session, RawServer([first, second]) as server:
        emit = Collector()
        await CCNowClient(ccnow_config(server.url), session).query([Y, X], emit)
    assert emit.seen == [ok(Y, "pending"), decided]


@pytest.mark.parametrize("action", ["adjust", "add-tracking"])
async def test_an_action_s_last_line_cut_in_its_data_is_no_line(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, f"{A} pending Refund f", chunked=True)]
    run = await ccnow(cfg, action, A, *ARGS[action])
    assert run.code == 75, run.stdout + run.stderr
    state = "uncertain" if action == "adjust" else "queued"
    assert commands(tmp_path) == [(A, state, "no single answer line for this order")]
