"""`track ccnow ID --ref REF`: a reference given with a CCNow order is refused for what it is,
as the file form's `ID,REF` line is (65), not as a count of ids (2)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import call_cli, cli_env, write_config
from tests.fake_providers import FakeCCNow


async def test_a_reference_with_a_ccnow_order_says_why_as_the_file_form_does(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    given = await call_cli(
        "--config", cfg, "track", "ccnow", "398101111", "--ref", "R2", env=cli_env()
    )
    ids = tmp_path / "ids.csv"
    ids.write_text("398101111,R2\n")
    from_file = await call_cli("--config", cfg, "track", "ccnow", "--from-file", ids, env=cli_env())
    assert from_file.code == 65, from_file.stderr
    assert (given.code, given.stdout) == (65, ""), given.stderr
    assert given.stderr.strip() == (
        "reconciler: error: --ref: external references are for CCV orders"
    )
    # Several ids with a reference: still a usage error for CCV, and said so.
    several = await call_cli(
        "--config", cfg, "track", "ccnow", "398101111", "398101112", "--ref", "R2", env=cli_env()
    )
    assert several.code == 65, several.stderr
    assert "external references are for CCV orders" in several.stderr
    assert not (tmp_path / "reconciler.db").exists() or "398-10-1111" not in (
        (await call_cli("--config", cfg, "orders", env=cli_env())).stdout
    )
