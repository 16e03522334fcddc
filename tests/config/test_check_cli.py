"""`reconciler check` as a process: a file that used to fail, or a typo that used to pass."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli

CCV = '[ccv]\nbase_url = "https://ccv.example"\n'


def config_text(tmp_path: Path, text: str) -> str:
    return f'[store]\npath = "{tmp_path / "reconciler.db"}"\n' + text


async def test_check_refuses_a_misspelt_status_word_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(
        config_text(tmp_path, CCV) + '[alerts.stuck_after.ccv]\nprocessing = "1d"\n',
        encoding="utf-8",
    )
    result = await run_cli("--config", cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"config error: {cfg}: alerts.stuck_after.ccv.processing: did you mean 'Processing'? "
        "status words are case-sensitive"
    ]


async def test_check_accepts_a_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_bytes(b"\xef\xbb\xbf" + config_text(tmp_path, CCV).encode())
    result = await run_cli("--config", cfg, "check")
    assert (result.code, result.stderr) == (0, ""), result.stderr
    assert "config ok" in result.stdout


async def test_check_refuses_a_command_sink_whose_program_is_missing(tmp_path: Path) -> None:
    # Else every event is retried until max_age, then dead-lettered. Only `check` refuses it:
    # a read-only command on a host without the hook still works.
    cfg = tmp_path / "reconciler.toml"
    sink = '[[sinks]]\ntype = "jsonl"\npath = "e.jsonl"\n[[sinks]]\ntype = "command"\n'
    cfg.write_text(
        config_text(tmp_path, CCV) + sink + 'command = ["/nonexistent/notify", "-q"]\n',
        encoding="utf-8",
    )
    result = await run_cli("--config", cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == (
        f"config error: {cfg}: sinks[1].command[0]: no executable program "
        "'/nonexistent/notify' (a path, or a name on PATH)"
    )
    assert (await run_cli("--config", cfg, "orders")).code == 0


async def test_check_judges_the_config_whatever_the_store_is(tmp_path: Path) -> None:
    # `check` looks into the store only to warn about unconfigured accounts: a store it cannot
    # open (here a directory; in production, one only the service's user may read) is not its
    # business, and was a traceback with exit 70.
    store = tmp_path / "reconciler.db"
    store.mkdir()
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(config_text(tmp_path, CCV), encoding="utf-8")
    result = await run_cli("--config", cfg, "check")
    assert (result.code, result.stderr) == (0, ""), result.stderr
    assert "config ok" in result.stdout
