"""Where a command's config comes from, and what the environment adds to it (probe 42): an
empty path given, an event loop that is none of the words, told in README's one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env

CCV = "[ccv]\nbase_url = 'https://ccv.example/api/'\napi_key = 't_0123'\n"


def config_file(tmp_path: Path) -> Path:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n" + CCV, encoding="utf-8")
    return cfg


async def test_an_empty_config_option_is_a_config_error(tmp_path: Path) -> None:
    # It fell through to $RECONCILER_CONFIG (then ./reconciler.toml): `check` said ok of a
    # file the command line did not name.
    env = cli_env(RECONCILER_CONFIG=str(config_file(tmp_path)))
    for command in ("check", "status"):
        result = await call_cli("--config", "", command, env=env)
        assert (result.code, result.stdout, result.stderr) == (
            78,
            "",
            "config error: '': --config: is empty: name the config file, or leave --config "
            "out for $RECONCILER_CONFIG, else ./reconciler.toml\n",
        )


async def test_an_empty_config_variable_is_a_config_error(tmp_path: Path) -> None:
    # It fell through to ./reconciler.toml, in the current directory.
    result = await call_cli("check", env=cli_env(RECONCILER_CONFIG=""))
    assert (result.code, result.stderr) == (
        78,
        "config error: '': RECONCILER_CONFIG: is empty: name the config file, or unset it "
        "for ./reconciler.toml\n",
    )


async def test_a_config_option_wins_over_the_variable(tmp_path: Path) -> None:
    cfg = config_file(tmp_path)
    result = await call_cli("--config", cfg, "check", env=cli_env(RECONCILER_CONFIG=""))
    assert result.code == 0, result.stderr
    result = await call_cli("check", env=cli_env(RECONCILER_CONFIG=str(cfg)))
    assert result.code == 0, result.stderr


async def test_an_event_loop_refused_is_readmes_one_config_error_line(tmp_path: Path) -> None:
    # It was `config error: RECONCILER_EVENT_LOOP: ...`, no file: not README's
    # `config error: <file>: <key>: <problem>`.
    cfg = config_file(tmp_path)
    env = cli_env(RECONCILER_EVENT_LOOP="bad")
    result = await call_cli("--config", cfg, "check", env=env)
    assert (result.code, result.stderr) == (
        78,
        f"config error: {cfg}: RECONCILER_EVENT_LOOP: must be one of auto, uvloop, asyncio, "
        "not 'bad'\n",
    )


@pytest.mark.parametrize(
    "command", [("sandbox", "--listen", "127.0.0.1:21170"), ("demo", "--orders", "0")]
)
async def test_an_event_loop_refused_where_no_config_is_read_names_no_file(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = cli_env(RECONCILER_EVENT_LOOP="bad")
    result = await call_cli(*command, env=env)
    assert (result.code, result.stderr) == (
        78,
        "config error: -: RECONCILER_EVENT_LOOP: must be one of auto, uvloop, asyncio, not 'bad'\n",
    )
