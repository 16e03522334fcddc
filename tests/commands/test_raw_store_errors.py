"""A store error met by a statement outside the store's own guards (a module's read, such as
the writes a stopped process left, which every writer reads at its start) is the contract's
exit code and one line naming the database, as one the guards meet: never exit 70 with a
traceback, which a damaged index of `commands` or `submissions` gave `ccnow resolve` and
`catch-up`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_one_line, call_cli, write_config
from tests.fake_providers import FakeCCNow, cut_off
from tests.store.test_damage_found import damage_pages
from tests.writes.test_ccnow_actions import A


@pytest.mark.parametrize("index", ["commands_open", "submissions_open"])
@pytest.mark.parametrize(
    "command", [("ccnow", "resolve", A, "--sent"), ("catch-up",)], ids=["resolve", "catch-up"]
)
async def test_a_damaged_index_read_outside_a_transaction_is_74_in_one_line(
    tmp_path: Path, fake_ccnow: FakeCCNow, index: str, command: tuple[str, ...]
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [cut_off(f"{A} pend")]  # the adjust's answer lost: uncertain
    adjust = await call_cli("--config", cfg, "ccnow", "adjust", A, "--amount", "7.25")
    assert adjust.code == 75, adjust.stderr
    db = tmp_path / "reconciler.db"
    damage_pages(db, f"name = '{index}'")

    result = await call_cli("--config", cfg, *command)
    assert_one_line(
        result, 74, f"reconciler: cannot use database {db}: database disk image is malformed"
    )
