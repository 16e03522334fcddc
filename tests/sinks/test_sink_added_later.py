"""A sink added to the config gets the events committed after it was added, not the history;
`replay --sink NAME` sends it the history, with the same ids (README, "Events")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import call_cli, read_events, write_config
from tests.fake_providers import FakeCCNow

A, B = "396-10-1142", "397-10-1159"


def later(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "later.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_a_sink_added_later_gets_new_events_and_the_history_by_replay(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", A)).code == 0
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    history = [e["id"] for e in read_events(tmp_path)]
    assert history
    sink = f'[[sinks]]\nname = "later"\ntype = "jsonl"\npath = "{tmp_path / "later.jsonl"}"\n'
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=sink)
    fake_ccnow.orders = {A: "mark_shipped", B: "pending"}
    assert (await call_cli("--config", cfg, "track", "ccnow", B)).code == 0
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    new = [e["id"] for e in read_events(tmp_path)][len(history) :]
    assert len(new) == 2  # A shipped, B discovered
    assert [e["id"] for e in later(tmp_path)] == new
    replayed = await call_cli("--config", cfg, "replay", "--sink", "later")
    assert replayed.code == 0, replayed.stderr
    assert sorted(e["id"] for e in later(tmp_path)[len(new) :]) == sorted([*history, *new])
    # The first sink got nothing again.
    assert [e["id"] for e in read_events(tmp_path)] == [*history, *new]
