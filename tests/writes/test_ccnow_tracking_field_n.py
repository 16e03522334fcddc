"""Several tracking uploads of one order in one post, against a fake CCNow on 127.0.0.1 that
adds them and answers the given lines: a line naming the upload's own numbered field
(`396-10-1142 error_message invalid x_tracknumber_2`) refuses that upload alone; the others
end as the lines not naming one say (no such line: sent again, as a command whose order has no
line). A line naming the field without its number cannot tell them apart: it refuses them all,
as before.

The sender puts one command of an order in a post (an older one holds the next back,
`store.commands.ahead`), so these drive one post of such a batch directly."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_actions import ActionSender, Tally, build
from tests.conftest import write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow
from tests.writes.test_ccnow_actions import A, B

INVALID_2 = f"{A} error_message invalid x_tracknumber_2"
NO_LINE = "no single answer line for this order"

CASES = {
    # Answer lines -> (state, words) per upload, in post order.
    "named-beside-the-order-line": (
        [f"{A} pending", INVALID_2],
        [("succeeded", "pending"), ("refused", "error_message invalid x_tracknumber_2"),
         ("succeeded", "pending")],
    ),
    "named-alone": (
        [INVALID_2],
        [("queued", NO_LINE), ("refused", "error_message invalid x_tracknumber_2"),
         ("queued", NO_LINE)],
    ),
    "named-in-another-case-and-unhyphenated": (
        [f"{A.replace('-', '')} pending", f"{A} ERROR_MESSAGE Invalid X_TRACKNUMBER_3"],
        [("succeeded", "pending"), ("succeeded", "pending"),
         ("refused", "ERROR_MESSAGE Invalid X_TRACKNUMBER_3")],
    ),
    "two-named": (
        [f"{A} pending", INVALID_2, f"{A} error_message invalid tracknumber_1"],
        [("refused", "error_message invalid tracknumber_1"),
         ("refused", "error_message invalid x_tracknumber_2"), ("succeeded", "pending")],
    ),
    # Cannot be told apart: as before, every upload of the order by the one line.
    "field-without-a-number": (
        [f"{A} error_message invalid x_tracknumber"],
        [("refused", "error_message invalid x_tracknumber")] * 3,
    ),
    "number-of-another-orders-upload": (
        [f"{A} error_message invalid x_tracknumber_4", f"{B} pending"],
        [("refused", "error_message invalid x_tracknumber_4")] * 3 + [("succeeded", "pending")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_a_line_naming_field_n_refuses_that_upload_alone(
    tmp_path: Path,
    fake_ccnow: FakeCCNow,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[list[str], list[tuple[str, str]]],
) -> None:
    lines, expected = case
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    cfg = config.ccnow[0]
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.actions_answer = lines
    uploads = [
        c
        for n in range(1, 4)
        for c in build(cfg, "add-tracking", [A], carrier="DHL", number=f"JD{n}", key=f"k{n}")
    ]
    if len(expected) == 4:
        uploads += build(cfg, "add-tracking", [B], carrier="DHL", number="JD4", key="k4")
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        async with aiohttp.ClientSession() as session:
            sender = ActionSender(
                store, session, Reconciler(config, store), config.ccnow, gates=Gates()
            )
            rows = [row for row, _ in await cmds.record(store, uploads, 0.0)]
            await sender._send_batch(cfg, rows, Tally())
            ended = await cmds.get(store, [r.id for r in rows])
    finally:
        await store.close()
    assert fake_ccnow.batch_sizes == [len(expected)]  # one post of them all
    assert [(c.state, c.answer) for c in ended] == expected
