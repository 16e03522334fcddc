"""While CCV submits are recent, a pass's transactions hold the writer about 2 ms at most
(hint_gate.WRITE_PART_S), not the 25 ms they may hold while notifications arrive: a submit that
arrives while one is in progress waits for the rest of it, for its record and again for its
close. Before, the slowest 1 % of submits through the API waited 15-47 ms for a pass's
transaction over the orders just submitted (bench/api.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import ReceiverConfig, load_config
from reconciler.config.secret import Secret
from reconciler.passes.batcher import WRITE_ROWS
from reconciler.passes.hint_gate import HintGate
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.writes.submit import Submitter
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCV_KEY, ccv_config

ORDERS = 300
HINT_ROWS = 120  # a pass's transaction while a notification is checked, or at an unknown pace
RECEIVER = ReceiverConfig(
    "127.0.0.1", 8080, "https://integrator.example/reconciler", Secret("s" * 32)
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


async def commits_of_a_catch_up_after(
    tmp_path: Path, fake: FakeCCVWrites, *, submit: bool
) -> list[int]:
    """Return the observations of each transaction of a catch-up over ORDERS orders, begun
    just after a submit through reconciler (or with none)."""
    ids = [str(uuid.uuid4()) for _ in range(ORDERS)]
    fake.orders.update(dict.fromkeys(ids, "Processing"))
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{fake.base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\n'
    )
    config = load_config(path)
    store = await Store.open(config.store_path)
    try:
        await store.orders.track("ccv", "default", [(i, None) for i in ids], 1.0)
        # A whole batch would fit in the usual duration (part_s): only a submit shortens it.
        reconciler = Reconciler(config, store, batch_rows=1000, hint_rows=HINT_ROWS, part_s=60.0)
        # The workers go on; only the writes count. The gate's clock stands still: however
        # slow the machine, the whole pass is "just after" the submit.
        reconciler.hints = HintGate(max_wait_s=0.0, clock=lambda: 0.0)
        committed: list[int] = []
        async with aiohttp.ClientSession() as session:
            if submit:
                submitter = Submitter(
                    store,
                    session,
                    accounts=[ccv_config(fake.base_url)],
                    receiver=RECEIVER,
                    gates=Gates(),
                    gate=reconciler.hints,
                )
                result = await submitter.submit("default", submit_body())
                assert result.status == 201
            reconciler.on_checked = committed.append
            await Coordinators.build(config, reconciler, session, Gates()).catch_up()
    finally:
        await store.close()
    return committed


async def test_just_after_a_submit_a_pass_commits_in_transactions_of_about_2_ms(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    committed = await commits_of_a_catch_up_after(tmp_path, fake, submit=True)
    assert sum(committed) == ORDERS + 1  # the submitted order is checked too
    # At an unknown pace the fewest; then what fits in 2 ms, far below a notification's part
    # (each transaction's commit alone takes a good part of the 2 ms).
    assert committed[0] == WRITE_ROWS
    assert max(committed) < HINT_ROWS, committed


async def test_without_a_submit_a_pass_commits_whole_batches(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    committed = await commits_of_a_catch_up_after(tmp_path, fake, submit=False)
    assert committed == [ORDERS]
