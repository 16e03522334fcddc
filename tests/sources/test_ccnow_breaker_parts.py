"""Review 28l: asking a batch again in parts must not fail a healthy CCNow account. A part
that met a gateway's page counted in the breaker's run on its own (three such parts of one
batch opened it), and a batch with two odd orders, whose parts ran out before both were found,
counted once with its answered parts no longer resetting the run: three such batches in a row
failed the account, every pass, and the later batches were never asked."""

from __future__ import annotations

import pytest
from aiohttp import web

from reconciler.model import Outcome
from reconciler.sources.errors import SourceUnavailable
from tests.sources.test_ccnow_batch_lines import LinesFake, query, said


class GatewayPages(LinesFake):
    """Answers the posts numbered in `pages` (from 1) with a gateway's HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: set[int] = set()
        self.posts = 0

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        if self.posts in self.pages:
            await request.post()
            return web.Response(
                status=200, text="<html><body>Bad gateway</body></html>", content_type="text/html"
            )
        return await super()._receive(request)


@pytest.mark.parametrize("pages", [{4, 8, 9}, {4, 9}])
async def test_parts_of_one_batch_meeting_a_gateway_page_do_not_fail_the_account(
    pages: set[int],
) -> None:
    async with GatewayPages() as fake:
        ids = [f"600-00-{i:04d}" for i in range(25)]
        fake.orders = dict.fromkeys(ids, "pending")
        fake.stray = {ids[3]: "total 4"}
        fake.pages = pages
        seen = said(await query(fake, ids, batch_size=25, concurrency=1))
    # The account answered (no SourceUnavailable): the parts that met the page failed alone,
    # the odd order too, and the parts that answered were read.
    assert seen[ids[3]][0] is not Outcome.OK
    assert any(status == (Outcome.OK, "pending") for status in seen.values()), seen


async def test_batches_of_two_odd_orders_in_a_row_do_not_fail_the_account() -> None:
    async with LinesFake() as fake:
        ids = [f"600-00-{i:04d}" for i in range(200)]
        fake.orders = dict.fromkeys(ids, "pending")
        odd = [ids[b * 25 + k] for b in (2, 3, 4) for k in (3, 20)]
        fake.stray = dict.fromkeys(odd, "total 4")
        seen = said(await query(fake, ids, batch_size=25, concurrency=1))
    # Every batch after the three was asked and read.
    assert all(seen[i] == (Outcome.OK, "pending") for i in ids[125:]), seen


async def test_a_line_in_every_answer_of_several_orders_opens_the_breaker_with_odd_orders_too() -> (
    None
):
    # Review 28m: one odd order at the front of every batch made each batch "find its odd
    # order", which exempted it from the breaker although no part of several orders was ever
    # read: most orders unasked pass after pass, the account never failing.
    async with LinesFake() as fake:
        ids = [f"600-00-{i:04d}" for i in range(200)]
        fake.orders = dict.fromkeys(ids, "pending")
        fake.stray_in_several = "total 4"
        fake.stray = {ids[b * 25]: "total 4" for b in range(8)}
        with pytest.raises(SourceUnavailable, match="batches failed in a row"):
            await query(fake, ids, batch_size=25, concurrency=1)


@pytest.mark.parametrize("batch_size", [5, 10, 13])
async def test_a_line_in_every_answer_of_several_orders_opens_the_breaker_with_two_odd_orders(
    batch_size: int,
) -> None:
    # Review 29a: two odd orders a batch earned each batch more shares (an order found alone,
    # a part of one order read), its parts all asked, and the batch reset the breaker's run:
    # 950 posts a pass of 500 orders, no part of several orders ever read, the account never
    # failing.
    async with LinesFake() as fake:
        ids = [f"600-00-{i:04d}" for i in range(100)]
        fake.orders = dict.fromkeys(ids, "pending")
        fake.stray_in_several = "total 4"
        fake.stray = {ids[b + k]: "total 4" for b in range(0, 100, batch_size) for k in (0, 2)}
        with pytest.raises(SourceUnavailable, match="batches failed in a row"):
            await query(fake, ids, batch_size=batch_size, concurrency=1)
