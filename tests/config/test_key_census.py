"""The census of a table's keys (its reader run on a table with nothing given) touches no disk
and no environment: a load from a deleted directory, or a store named like the census's
stand-in, is judged on the config alone."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.config import load_config
from tests.conftest import call_cli, cli_env

CCV = '[ccv]\nbase_url = "https://ccv.example/api/"\napi_key = "t_0123"\n'


def test_a_config_loads_from_a_deleted_working_directory(tmp_path: Path) -> None:
    cfg = tmp_path / "reconciler.toml"
    store = tmp_path / "reconciler.db"
    sinks = f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "e.jsonl"}"\n'
    cfg.write_text(f'[store]\npath = "{store}"\n{CCV}{sinks}', "utf-8")
    gone = tmp_path / "d"
    gone.mkdir()
    here = os.getcwd()
    try:
        os.chdir(gone)
        gone.rmdir()
        config = load_config(cfg)
    finally:
        os.chdir(here)
    assert config.store_path == store


async def test_a_store_named_census_beside_a_jsonl_sink_is_valid(tmp_path: Path) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(
        f'[store]\npath = "census"\n{CCV}[[sinks]]\ntype = "jsonl"\npath = "e.jsonl"\n', "utf-8"
    )
    result = await call_cli("--config", cfg, "check", env=cli_env())
    assert result.code == 0, result.stderr


async def test_a_log_sinks_unknown_key_is_named_beside_a_store_named_census(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(
        f'[store]\npath = "census"\n{CCV}[[sinks]]\ntype = "log"\nurll = "https://x.example/"\n',
        "utf-8",
    )
    result = await call_cli("--config", cfg, "check", env=cli_env())
    problem = "sinks[0].urll: unknown key"
    assert (result.code, result.stderr) == (78, f"config error: {cfg}: {problem}\n")
