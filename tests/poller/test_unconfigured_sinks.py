"""Undelivered events kept under a sink name the config no longer names. An unnamed sink is
named by its type and position (`jsonl`, `jsonl-2`): removing the first of two renames the
second, whose backlog then waited under a name nothing delivers to, and went unsaid (`catch-up`
0, `status` backlog 0) until retention let go of it. It is said at start and in `status`, and
`catch-up` counts it undelivered (75)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.json_text import iso_time
from reconciler.poller.unconfigured import unconfigured_sinks, warn_unconfigured_sinks
from reconciler.store import Store
from tests.conftest import (
    WEBHOOK_SECRET,
    call_cli,
    cli_env,
    environ,
    webhook_sink,
    write_config,
)
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

    url = "https://u:pw@hooks.example:8443/T0/B0/XSECRETX?k=QSECRET"
    hook = WebhookSinkConfig(name="w", url=url, secret=Secret("s"))
    command = CommandSinkConfig(name="c", command=("/usr/bin/notify", "--token", "ASECRET"))
    salt = bytes(16)
    for sc in (hook, command):
        assert "SECRET" not in sink_target(sc, salt) and "pw" not in sink_target(sc, salt)
    # No part of a webhook's URL (its host may be the capability), and no fingerprint a guess
    # could be checked against offline: keyed with the store's salt.
    assert "hooks.example" not in sink_target(hook, salt) and "https" not in sink_target(hook, salt)
    assert hashlib.sha256(url.encode()).hexdigest()[:12] not in sink_target(hook, salt)
    assert sink_target(hook, salt) != sink_target(hook, bytes([1]) * 16)
    other = WebhookSinkConfig(
        name="w", url="https://hooks.example:8443/T0/B0/Y", secret=Secret("s")
    )
    assert sink_target(other, salt) != sink_target(hook, salt)


async def test_a_webhook_whose_url_changed_is_said_without_its_url(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {"396101142": "pending"}
    env = cli_env(RECONCILER_SINK_WEBHOOK_SECRET=WEBHOOK_SECRET)
    # Nothing listens on the first URL: the event waits under `webhook`.
    first_url = "http://127.0.0.1:25740/capability-XSECRETX"
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=webhook_sink(first_url))
    first = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s", env=env)
    assert first.code == 75, first.stderr
    cfg.write_text(cfg.read_text().replace(first_url, "http://127.0.0.1:25741/other"))
    second = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s", env=env)
    changed = [
        line for line in second.log_lines() if line["message"] == "sinks.sink_target_changed"
    ]
    assert [(c["sink"], c["was"], c["now"]) for c in changed] == [("webhook",) * 3]
    assert changed[0]["change"] == "the webhook's URL changed"
    for text in (json.dumps(changed), (tmp_path / "reconciler.db").read_bytes().decode("latin-1")):
        assert "127.0.0.1:2574" not in text and "XSECRETX" not in text


async def test_a_configured_sinks_backlog_is_not_read_for_the_names_gone(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A configured sink's backlog may be half a million events: finding the names no longer
    # configured joined each of its rows to its event, to drop them after. Only the rows of
    # the names gone are read now.
    with environ(cli_env()):
        config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    path = tmp_path / "reconciler.db"
    await (await Store.open(path)).close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO events (seq, id, type, time, source, account, order_id, severity, body)"
            " VALUES (?, ?, 'order.status_changed', ?, 'ccnow', 'default', 'o', 'info', x'00')",
            [(seq, f"evt-{seq}", 1.7e9 + seq) for seq in (1, 2, 3)],
        )
        conn.executemany(
            "INSERT INTO deliveries (sink, event_seq, state) VALUES (?, ?, 'pending')",
            [("jsonl", 1), ("jsonl", 2), ("jsonl-2", 3)],
        )
    store = await Store.open(path)
    try:
        statements: list[str] = []
        await store.conn.set_trace_callback(statements.append)
        assert await unconfigured_sinks(config, store) == {"jsonl-2": (1, 1.7e9 + 3)}
        joins = [s for s in statements if "JOIN events" in s]
        # The join names the sinks it reads: the gone one, not the configured one.
        assert joins and all("'jsonl-2'" in s and "'jsonl'" not in s for s in joins), joins
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("DELETE FROM deliveries WHERE sink = 'jsonl-2'")
        statements.clear()
        assert await unconfigured_sinks(config, store) == {}
        assert [s for s in statements if "JOIN events" in s] == []  # none gone: no join
    finally:
        await store.close()


async def test_a_name_holding_only_dead_letters_is_said(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Only pending rows were counted: a name no longer configured holding dead letters alone
    # went unsaid by `check`, `status` and `catch-up`, though they are events it never got.
    with environ(cli_env()):
        config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    path = tmp_path / "reconciler.db"
    await (await Store.open(path)).close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO events (seq, id, type, time, source, account, order_id, severity, body)"
            " VALUES (?, ?, 'order.status_changed', ?, 'ccnow', 'default', 'o', 'info', x'00')",
            [(seq, f"evt-{seq}", 1.7e9 + seq) for seq in (1, 2, 3)],
        )
        conn.executemany(
            "INSERT INTO deliveries (sink, event_seq, state) VALUES (?, ?, ?)",
            [
                ("old", 1, "dead"),
                ("old", 2, "delivered"),
                ("old", 3, "dead"),
                ("mixed", 2, "dead"),
                ("mixed", 3, "pending"),
            ],
        )
    store = await Store.open(path)
    try:
        expected = {"mixed": (2, 1.7e9 + 2), "old": (2, 1.7e9 + 1)}
        assert await unconfigured_sinks(config, store) == expected
        pending = await store.outbox.pending_counts()  # as `catch-up` and `status` count
        assert await unconfigured_sinks(config, store, pending) == expected
    finally:
        await store.close()


async def test_a_name_holding_only_dead_letters_is_said_by_every_command(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A sink renamed after its receiver dead-lettered two events ten days ago: `check` and
    # `catch-up` say the name, `catch-up` exits 75 for it, and its own prune keeps the dead
    # letters (the week counts from the name first found unconfigured, not from the events),
    # so `status` still lists it and `replay --sink NAME` can still send them.
    fake_ccnow.orders = {"396101142": "pending", "396101143": "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    first = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "5s")
    assert first.code == 0, first.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute("UPDATE events SET time = time - 10 * 86400")
        conn.execute(
            "INSERT INTO deliveries (sink, event_seq, state, attempts) "
            "SELECT 'old', seq, 'dead', 3 FROM events"
        )

    checked = await call_cli("--config", cfg, "check")
    assert checked.code == 0, checked.stderr
    assert _warnings(checked.stderr) == [("old", 2)]
    caught = await call_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s")
    assert caught.code == 75, caught.stderr
    assert _warnings(caught.stderr) == [("old", 2)]
    (done,) = [line for line in caught.log_lines() if line["message"] == "catch-up.done"]
    assert done["undelivered"] == {"old": 2}

    status = await call_cli("--config", cfg, "status", "--json")
    assert status.code == 0, status.stderr
    sinks = {s["name"]: s for s in json.loads(status.stdout)["sinks"]}
    assert (sinks["old"]["backlog"], sinks["old"]["dead"]) == (0, 2)
    assert sinks["old"]["configured"] is False
    assert _warnings(status.stderr) == [("old", 2)]
    text_status = await call_cli("--config", cfg, "status")
    assert "old (not configured)" in text_status.stdout


def test_the_hint_dates_the_let_go_a_week_from_the_name_first_found_never_in_the_past(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Dated from each event, a backlog ten days old at the rename was "let go of at" a date
    # already past, as if a deadline ahead; a name no start or prune has found yet has its
    # week still whole.
    now, day = 1.8e9, 86400.0
    oldest = {"old": (2, now - 30 * day)}
    with caplog.at_level(logging.WARNING, logger="reconciler.poller"):
        warn_unconfigured_sinks(oldest, 400 * day, {"old": now - 2 * day}, now)
        warn_unconfigured_sinks(oldest, 400 * day, {}, now)
        warn_unconfigured_sinks(oldest, 400 * day, {"old": now - 8 * day}, now)
        warn_unconfigured_sinks(oldest, 31 * day, {"old": now - 2 * day}, now)
    said = [r.fields for r in caplog.records]  # type: ignore[attr-defined]
    two, eight = iso_time(now - 2 * day), iso_time(now - 8 * day)
    assert [s["gone_since"] for s in said] == [two, None, eight, two]
    hints = [str(s["hint"]) for s in said]
    ahead = f"keep_events sooner: the oldest from {iso_time(now + 5 * day)}"
    assert hints[0].endswith(f"first found unconfigured ({two}), of an event older than {ahead}")
    assert "(not yet: by the next start or prune)" in hints[1]
    assert hints[1].endswith(f"the oldest from {iso_time(now + 7 * day)}")
    assert hints[2].endswith("the oldest at the next prune")
    assert hints[3].endswith(f"the oldest from {iso_time(now + day)}")  # the window's end first


def test_a_first_found_time_in_the_future_dates_the_let_go_from_now(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Recorded under a clock a year ahead, since set right: retention counts the week from now
    # (the next prune takes the time back), the hint said a date a year on.
    now, day = 1.8e9, 86400.0
    with caplog.at_level(logging.WARNING, logger="reconciler.poller"):
        warn_unconfigured_sinks(
            {"old": (2, now - 30 * day)}, 400 * day, {"old": now + 365 * day}, now
        )
    [said] = [r.fields for r in caplog.records]  # type: ignore[attr-defined]
    assert str(said["hint"]).endswith(f"the oldest from {iso_time(now + 7 * day)}")
