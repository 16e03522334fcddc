"""An adjust's or tracking upload's answer line whose documented status is followed by more
columns (`pending E42`, `pending 402Declined`) is no word that CCNow applied it: an adjust is
answered `pending` whether it was applied or not, and the column may be a refusal's code. Each
such command ends `uncertain` (a person looks; never sent again: a discount would be doubled,
a tracking number uploaded twice). `pending` alone still settles them, and a ship's
`mark_shipped` line with columns still shows the order moved. Each answer comes from a fake on
127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_providers import FakeCCNow
from tests.writes.test_ccnow_actions import A, ccnow, commands, tracked

COLUMNS = ["E42", "NOK1", "x_amount_1", "NOTPENDING1", "402Declined"]
ASKED = {
    "adjust": ["adjust", A, "--amount", "3.00"],
    "track": ["add-tracking", A, "--carrier", "DHL", "--number", "1"],
}


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("action", ["adjust", "track"])
async def test_a_pending_line_with_more_columns_is_uncertain(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, column: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} pending {column}"]
    run = await ccnow(cfg, *ASKED[action])
    assert run.code == 75, run.stdout + run.stderr
    [(order_id, state, words)] = commands(tmp_path)
    assert (order_id, state) == (A, "uncertain")
    assert words is not None and "more columns" in words
    assert len(fake_ccnow.actions) == 1


@pytest.mark.parametrize("action", ["adjust", "track"])
async def test_pending_alone_still_succeeds(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} pending"]
    run = await ccnow(cfg, *ASKED[action])
    assert run.code == 0, run.stdout + run.stderr
    assert commands(tmp_path) == [(A, "succeeded", "pending")]


async def test_a_ship_answered_mark_shipped_with_columns_still_succeeds(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} mark_shipped UPS 1Z999"]
    run = await ccnow(cfg, "ship", A, "--notes", "On its way")
    assert run.code == 0, run.stdout + run.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped")]
