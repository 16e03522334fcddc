"""Undelivered events kept under a sink name the config no longer names. An unnamed sink is
named by its type and position (`jsonl`, `jsonl-2`): removing the first of two renames the
second, whose backlog then waited under a name nothing delivers to, and went unsaid (`catch-up`
0, `status` backlog 0) until retention let go of it. It is said at start and in `status`, and
`catch-up` counts it undelivered (75)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow


async def test_the_backlog_of_a_sink_no_longer_named_is_said(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {"396101142": "pending", "396101143": "pending"}
    (tmp_path / "blocker").write_text("")  # the second sink's directory is a file: it fails
    blocked = tmp_path / "blocker" / "b.jsonl"
    cfg = write_config(
        tmp_path, ccnow=fake_ccnow, extra=f'[[sinks]]\ntype = "jsonl"\npath = "{blocked}"\n'
    )
    first = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert first.code == 75, first.stderr
    # The first sink removed: the second, unnamed, is now `jsonl`, to a file it can write.
    text = cfg.read_text()
    text = text.replace(f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "events.jsonl"}"\n', "")
    cfg.write_text(text.replace(str(blocked), str(tmp_path / "b.jsonl")))

    status = await call_cli("--config", cfg, "status", "--json")
    assert status.code == 0, status.stderr
    sinks = {s["name"]: s for s in json.loads(status.stdout)["sinks"]}
    assert sinks["jsonl-2"]["backlog"] == 2 and sinks["jsonl-2"]["configured"] is False
    assert sinks["jsonl"]["configured"] is True
    assert _warnings(status.stderr) == [("jsonl-2", 2)]
    text_status = await call_cli("--config", cfg, "status")
    assert "jsonl-2" in text_status.stdout

    second = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert second.code == 75, second.stderr
    assert _warnings(second.stderr) == [("jsonl-2", 2)]
    done = [line for line in second.log_lines() if line["message"] == "catch-up.done"]
    assert done[0]["undelivered"] == {"jsonl-2": 2}


def _warnings(stderr: str) -> list[tuple[str, int]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [
        (line["sink"], line["undelivered"])
        for line in lines
        if line["message"] == "sinks.sink_not_configured"
    ]


async def test_a_name_given_to_another_target_is_said_once(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {"396101142": "pending"}
    (tmp_path / "blocker").write_text("")
    blocked = tmp_path / "blocker" / "a.jsonl"
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    sink = f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "events.jsonl"}"\n'
    cfg.write_text(
        cfg.read_text().replace(sink, f'[[sinks]]\ntype = "jsonl"\npath = "{blocked}"\n')
    )
    first = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert first.code == 75, first.stderr  # `jsonl` (blocker/a.jsonl) keeps its event
    # A sink inserted before it: the new one is now `jsonl`, the old one `jsonl-2`.
    other = f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "new.jsonl"}"\n'
    cfg.write_text(cfg.read_text().replace("[[sinks]]", other + "[[sinks]]", 1))
    second = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    changed = [
        line for line in second.log_lines() if line["message"] == "sinks.sink_target_changed"
    ]
    assert [(c["sink"], c["undelivered"]) for c in changed] == [("jsonl", 1)]
    assert str(blocked) in changed[0]["was"] and str(tmp_path / "new.jsonl") in changed[0]["now"]
    third = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert "sinks.sink_target_changed" not in [x["message"] for x in third.log_lines()]


def test_targets_name_no_secret() -> None:
    from reconciler.config import CommandSinkConfig, WebhookSinkConfig
    from reconciler.config.secret import Secret
    from reconciler.sinks import sink_target

    hook = WebhookSinkConfig(
        name="w", url="https://u:pw@hooks.example:8443/T0/B0/XSECRETX?k=QSECRET", secret=Secret("s")
    )
    command = CommandSinkConfig(name="c", command=("/usr/bin/notify", "--token", "ASECRET"))
    for sc in (hook, command):
        assert "SECRET" not in sink_target(sc) and "pw" not in sink_target(sc)
    assert sink_target(hook).startswith("webhook https://hooks.example:8443")
    other = WebhookSinkConfig(
        name="w", url="https://hooks.example:8443/T0/B0/Y", secret=Secret("s")
    )
    assert sink_target(other) != sink_target(hook)
