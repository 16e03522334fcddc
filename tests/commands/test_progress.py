"""Progress of long commands: a bar with counts on a terminal's stderr, nothing but JSON log
lines when stderr is a pipe (a log file, the journal, a script)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Result, call_cli, cli_env, write_config
from tests.fake_providers import FakeCCV
from tests.tty import ANSI, call_cli_on_tty

IDS = [f"5a6b7c8d-0000-4000-8000-{n:012d}" for n in range(300)]


def _only_json_lines(result: Result) -> list[dict[str, object]]:
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("{") for line in lines), result.stderr[:500]
    return [json.loads(line) for line in lines]


def _log_lines_on_tty(text: str) -> list[dict[str, object]]:
    """Return the JSON lines of a terminal's text; each must be whole, not torn by a bar (a bar
    is redrawn after a carriage return, on the line it is on)."""
    found = []
    for line in ANSI.sub("", text).split("\n"):
        for piece in line.split("\r"):
            if piece.startswith("{"):
                found.append(json.loads(piece))
    return found


async def test_track_from_a_long_file_shows_progress_only_on_a_terminal(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    ids = tmp_path / "ids.txt"
    # Four of the chunks `track` writes (and reports) at a time.
    ids.write_text("".join(f"5a6b7c8d-0000-4000-8000-{n:012d}\n" for n in range(20_000)))

    piped = await call_cli("--config", cfg, "track", "ccv", "--from-file", ids)
    assert piped.code == 0, piped.stderr
    assert [x["message"] for x in _only_json_lines(piped)] == ["orders.tracked"]

    tty = await call_cli_on_tty(
        "--config", cfg, "track", "ccv", "--from-file", ids, env=cli_env(), tty="stderr"
    )
    assert tty.code == 0, tty.stderr
    assert "track: 100%" in tty.stderr and "20000/20000" in tty.stderr
    assert "orders/s" in tty.stderr  # the rate
    assert [x["message"] for x in _log_lines_on_tty(tty.stderr)] == ["orders.tracked"]


async def test_catch_up_shows_progress_and_its_log_lines_stay_whole(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = dict.fromkeys(IDS, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *IDS)).code == 0
    tty = await call_cli_on_tty("--config", cfg, "catch-up", env=cli_env(), tty="stderr")
    assert tty.code == 0, tty.stderr
    assert "catch-up: 100%" in tty.stderr and "300/300" in tty.stderr
    lines = _log_lines_on_tty(tty.stderr)
    assert sum(1 for x in lines if x.get("event_type") == "order.discovered") == 300
    assert lines[-1]["message"] == "catch-up.done"

    fake_ccv.orders = dict.fromkeys(IDS, "FulfillmentDone")
    piped = await call_cli("--config", cfg, "catch-up")
    assert piped.code == 0, piped.stderr
    lines = _only_json_lines(piped)
    assert sum(1 for x in lines if x.get("event_type") == "order.status_changed") == 300
    assert [x["message"] for x in lines if "event_type" not in x] == [
        "store.pruned",
        "catch-up.done",
    ]


async def test_replay_shows_progress_only_on_a_terminal(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.orders = dict.fromkeys(IDS, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *IDS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    piped = await call_cli("--config", cfg, "replay", "--sink", "jsonl")
    assert piped.code == 0, piped.stderr
    assert [x["message"] for x in _only_json_lines(piped)] == ["replay.queued", "replay.done"]

    tty = await call_cli_on_tty(
        "--config", cfg, "replay", "--sink", "jsonl", env=cli_env(), tty="stderr"
    )
    assert tty.code == 0, tty.stderr
    assert "replay jsonl: 100%" in tty.stderr and "300/300" in tty.stderr
    assert [x["message"] for x in _log_lines_on_tty(tty.stderr)] == ["replay.queued", "replay.done"]
