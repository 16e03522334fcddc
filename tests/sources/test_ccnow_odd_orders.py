"""Brief n50: a batch asked again in parts had posts enough to find one odd order (a line that
cannot be read, in the answers that ask that order alone): with two in a batch of 25, the parts
past its posts failed 6-9 healthy orders, and as batches are made the same way pass after pass,
those orders were never read (DESIGN.md invariant 7). Each order found alone now earns its
batch a share of posts more, up to FOUND_ORDERS shares."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pytest

from reconciler.model import OrderKey, Outcome, normalize_ccnow_id
from reconciler.sources.ccnow_batches import FOUND_ORDERS
from tests.conftest import ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD
from tests.sources.test_ccnow_batch_lines import LinesFake, query, said

# A pass's posts, documented (Split): b batches of n, each its post and FOUND_ORDERS shares of
# 2*ceil(log2 n).
SHARE_25 = 2 * math.ceil(math.log2(25))


class AloneFake(LinesFake):
    """LinesFake that notes the orders asked alone."""

    def __init__(self) -> None:
        super().__init__()
        self.alone: list[str] = []

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        if len(ids) == 1:
            self.alone.append(normalize_ccnow_id(ids[0]))
        return super()._lines(ids, form)


def orders(count: int) -> list[str]:
    return [f"600-00-{i:04d}" for i in range(count)]


@pytest.mark.parametrize(
    "odd",
    [
        # Two odd orders: in one half, deep in it, and in both halves of the batch.
        (3, 20),
        (0, 11),
        (5, 6),
        (12, 24),
        (1, 13),
        # Three.
        (3, 9, 20),
        (0, 12, 13),
        (10, 11, 23),
        (2, 14, 24),
    ],
)
async def test_two_or_three_odd_orders_in_a_batch_fail_only_themselves(
    odd: tuple[int, ...],
) -> None:
    async with AloneFake() as fake:
        ids = orders(100)
        fake.orders = dict.fromkeys(ids, "pending")
        # The same positions in every batch, concurrency 1: every batch in a row has them.
        bad = [ids[b * 25 + k] for b in range(4) for k in odd]
        fake.stray = dict.fromkeys(bad, "total 4")
        seen = said(await query(fake, ids, batch_size=25, concurrency=1))
        posts = len(fake.batch_sizes)
    # No SourceUnavailable; was: 6-9 healthy orders of each batch failed (`protocol`), unasked.
    assert seen == {
        i: (Outcome.FAILED, "protocol") if i in bad else (Outcome.OK, "pending") for i in ids
    }
    assert posts <= 4 * (1 + FOUND_ORDERS * SHARE_25)


@pytest.mark.parametrize("odd", [(3, 9, 15, 20), (0, 1, 12, 24), (1, 5, 9, 13, 17, 21, 24)])
async def test_more_odd_orders_than_shares_cost_bounded_posts_and_fail_no_account(
    odd: tuple[int, ...],
) -> None:
    async with AloneFake() as fake:
        ids = orders(125)
        fake.orders = dict.fromkeys(ids, "pending")
        # Four batches in a row with them (past the breaker's 3), then one without.
        bad = [ids[b * 25 + k] for b in range(4) for k in odd]
        fake.stray = dict.fromkeys(bad, "total 4")
        seen = said(await query(fake, ids, batch_size=25, concurrency=1))
        posts = len(fake.batch_sizes)
        alone = fake.alone
    # Within the documented bound, three odd orders found alone each batch (was: one or two),
    # the account answering (each batch found an order alone and read a part of several
    # orders: not counted in the breaker's run), and the batch after them read.
    assert posts <= 5 * (1 + FOUND_ORDERS * SHARE_25), posts
    for b in range(4):
        found = [i for i in bad[b * len(odd) : (b + 1) * len(odd)] if i in alone]
        assert len(found) >= FOUND_ORDERS, (b, found)
    assert all(seen[i] == (Outcome.OK, "pending") for i in ids[100:])
    # Each order said is said right; those past a batch's posts are not failed, nothing was
    # said of them (asked at the next poll; was: failed `protocol`).
    assert all(
        said == ((Outcome.FAILED, "protocol") if i in bad else (Outcome.OK, "pending"))
        for i, said in seen.items()
    )


async def test_healthy_orders_beside_two_odd_ones_have_their_status_changes_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with LinesFake() as fake:
        ids = orders(100)
        fake.orders = dict.fromkeys(ids, "on_hold")  # not on the pending list: queried
        bad = [ids[b * 25 + k] for b in range(4) for k in (3, 20)]
        fake.stray = dict.fromkeys(bad, "total 4")
        async with ccnow_coordinator(tmp_path, fake, 2.0) as (coordinator, clock):
            await coordinator.store.orders.track(
                "ccnow", "default", [(i, None) for i in ids], clock.now
            )
            await coordinator.full_pass(via="catch-up")
            fake.orders = {i: "on_hold" if i in bad else "completed" for i in ids}
            clock.now += 600
            await coordinator.full_pass(via="catch-up")
            events = await coordinator.store.events.history()
            state = await coordinator.store.sources.state("ccnow", "default")
            keys = [OrderKey("ccnow", "default", i) for i in ids]
            stored = {k.order_id: s for k, s in (await coordinator.store.orders.load(keys)).items()}
    assert [e.type for e in events if e.order_id is None] == []  # no source.failed
    assert not state.failing
    # Every healthy order's change was found (was: 6-9 a batch never read, pass after pass).
    assert {i: s.status for i, s in stored.items() if i not in bad} == dict.fromkeys(
        [i for i in ids if i not in bad], "completed"
    )
    assert all(stored[i].status is None and stored[i].failure_streak == 2 for i in bad)


# --- brief n72 (probe 39) -----------------------------------------------------------------


@pytest.mark.parametrize("odd", [(1, 9), (0, 15), (6, 7), (2, 11, 13)])
@pytest.mark.parametrize("line", ["??? garbage", "{short} pending"])
async def test_odd_orders_whose_answer_alone_is_no_ccnow_line_fail_only_themselves(
    odd: tuple[int, ...], line: str
) -> None:
    async with AloneFake() as fake:
        ids = [f"100-00-{i:04d}" for i in range(1, 17)]
        fake.orders = dict.fromkeys(ids, "processing")
        bad = [ids[k] for k in odd]
        # Asked alone, the answer holds no line in CCNow's words (`00-0002 pending` for
        # 100-00-0002): a plain protocol error, not an unreadable line of an asked order's.
        fake.line_for = {i: line.format(short=i[4:]) for i in bad}
        seen = said(await query(fake, ids, batch_size=16, concurrency=1))
        posts = len(fake.batch_sizes)
    # Was: the first odd order found alone earned no share; 7-11 healthy orders of the parts
    # not asked failed `protocol`, every pass.
    assert seen == {
        i: (Outcome.FAILED, "protocol") if i in bad else (Outcome.OK, "processing") for i in ids
    }
    assert posts <= 1 + FOUND_ORDERS * 2 * math.ceil(math.log2(16))
