"""What a review of the second round of CCNow actions found, against fake CCNow servers on
127.0.0.1: a discount recorded behind a queued one went out after that one's answer was lost;
a command held behind an older one of its order was not counted as sent when it went, nor said
what it waited for; a line naming a command's field after a lost answer did not refuse it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.runtime import writer_unless_held
from tests.conftest import call_cli, cli_env, free_port, write_config
from tests.fake_providers import CCNOW_CLIENT_ID, CCNOW_PASSWORD, FakeCCNow, Reply, html_page
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import A, ccnow, commands, daemon_with_api, tracked
from tests.writes.test_ccnow_commands_one_at_a_time import action_events, lost_twice


def _sql(tmp_path: Path, statement: str, *params: object) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute(statement, params)


def _applied(fake: FakeCCNow) -> list[tuple[str, str | None]]:
    return [(action, fields.get("x_amount")) for _, action, fields in fake.actions]


async def _queued_adjust(tmp_path: Path, fake: FakeCCNow) -> Path:
    """A config whose first discount of A was turned away (a 429): queued for a retry."""
    fake.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake, A)
    fake.script = [Reply(429)]
    first = await ccnow(cfg, "adjust", A, "--amount", "3.00")
    assert first.code == 75, first.stdout + first.stderr
    assert commands(tmp_path) == [(A, "queued", "http 429")]
    return cfg


# --- 1. two discounts -----------------------------------------------------------------------


async def test_a_second_discount_while_the_first_is_queued_is_refused_and_never_posted(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = await _queued_adjust(tmp_path, fake_ccnow)
    second = await ccnow(cfg, "adjust", A, "--amount", "2.00")
    assert second.code == 65, second.stdout + second.stderr
    assert "an earlier discount of this order (#1) is queued" in second.stdout
    _sql(tmp_path, "UPDATE commands SET next_attempt_at = 0")  # the retry is due
    fake_ccnow.after_applying = [html_page(502)]  # the first is applied, its answer lost
    shipped = await ccnow(cfg, "ship", A)
    assert shipped.code == 0, shipped.stdout + shipped.stderr
    assert _applied(fake_ccnow) == [("adjust", "3.00"), ("ship", None)]
    assert [state for _, state, _ in commands(tmp_path)] == ["uncertain", "succeeded"]


async def test_a_discount_recorded_beside_a_queued_one_is_refused_once_that_one_is_uncertain(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = await _queued_adjust(tmp_path, fake_ccnow)
    # Recorded beside it, as two requests at once (or an older release) could.
    _sql(
        tmp_path,
        "INSERT INTO commands (account, order_id, action, idempotency_key, amount, state, "
        "created_at) VALUES ('default', ?, 'adjust', 'second', '2.00', 'queued', 1.0)",
        A,
    )
    _sql(tmp_path, "UPDATE commands SET next_attempt_at = 0")
    fake_ccnow.after_applying = [html_page(502)]
    shipped = await ccnow(cfg, "ship", A)
    assert shipped.code == 0, shipped.stdout + shipped.stderr
    assert _applied(fake_ccnow) == [("adjust", "3.00"), ("ship", None)]
    assert commands(tmp_path) == [
        (A, "uncertain", "http_502"),
        (
            A,
            "refused",
            "an earlier discount of this order (#1) is uncertain: settle it with "
            f"`reconciler ccnow resolve {A} --sent|--not-sent --action adjust` first",
        ),
        (A, "succeeded", "mark_shipped"),
    ]
    assert sorted(action_events(tmp_path)) == [
        "order.action_refused",
        "order.action_succeeded",
        "order.action_uncertain",
    ]


# --- 2, 3. a command held behind an older one of its order ----------------------------------


async def test_a_held_command_says_what_it_waits_for_and_counts_as_sent_when_it_goes(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = await _queued_adjust(tmp_path, fake_ccnow)
    held = await ccnow(cfg, "ship", A)
    assert held.code == 75, held.stdout + held.stderr
    assert held.stdout == f"{A} ship queued: waits for #1 (adjust) of its order (command 2)\n"
    assert "sent 0, done 0, refused 0, uncertain 0, queued 1" in held.stderr
    _sql(tmp_path, "UPDATE commands SET next_attempt_at = 0")
    again = await ccnow(cfg, "ship", A)
    assert again.code == 0, again.stdout + again.stderr
    assert (
        again.stdout
        == f"{A} ship succeeded: mark_shipped (command 2) (made before with this key)\n"
    )
    assert "sent 1, done 1, refused 0, uncertain 0, queued 0" in again.stderr


# --- 4. a line naming the command's field after a lost answer --------------------------------


async def test_a_tracking_upload_refused_by_a_line_naming_its_field_after_a_lost_answer_is_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    args = ("add-tracking", A, "--carrier", "DHL", "--number", "JD01")
    cfg = await lost_twice(tmp_path, fake_ccnow, *args)
    line = "error_message x_tracknumber_1 invalid tracking number"
    fake_ccnow.script = [Reply(200, line + "\n")]
    again = await ccnow(cfg, *args)
    assert again.code == 65, again.stdout + again.stderr
    assert commands(tmp_path) == [(A, "refused", line)]
    assert action_events(tmp_path) == ["order.action_refused"]


async def test_a_ship_refused_by_a_line_naming_its_field_is_refused_when_its_status_is_not_read(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The field named is one the command sends: only such a field refuses it.
    args = ("ship", A, "--notes", "On its way")
    cfg = await lost_twice(tmp_path, fake_ccnow, *args)
    line = "error_message x_notes_1 too long"
    fake_ccnow.script = [Reply(200, line + "\n")]
    fake_ccnow.always = Reply(500)  # the status read fails
    again = await ccnow(cfg, *args)
    assert again.code == 65, again.stdout + again.stderr
    assert commands(tmp_path) == [(A, "refused", line)]
    assert action_events(tmp_path) == ["order.action_refused"]


async def test_the_api_names_what_a_held_command_waits_for(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    async with daemon_with_api(cfg, port) as http:
        fake_ccnow.replies_for[A] = Reply(429)  # turned away: queued, due in 30 s
        adjust = {"order_id": A, "action": "adjust", "amount": "3.00", "idempotency_key": "K1"}
        async with http.post(base, json=adjust) as r:
            assert (r.status, (await r.json())["state"]) == (202, "queued")
        async with http.post(base, json={"order_id": A, "action": "ship"}) as r:
            body = await r.json()
    assert (body["state"], body["sent"]) == ("queued", 0), body
    assert body["answer"] == "waits for #1 (adjust) of its order", body


# --- review 22 ------------------------------------------------------------------------------


async def test_senders_at_once_refuse_a_held_discount_once(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon's tick and requests send at the same time: each found the discount held
    # behind an uncertain one and refused it, one order.action_refused each.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    for key, state in (("first", "uncertain"), ("second", "queued")):
        _sql(
            tmp_path,
            "INSERT INTO commands (account, order_id, action, idempotency_key, amount, state, "
            "created_at) VALUES ('default', ?, 'adjust', ?, '2.00', ?, 1.0)",
            A,
            key,
            state,
        )
    for name, value in cli_env().items():
        if name.startswith("RECONCILER_"):
            monkeypatch.setenv(name, value)
    async with writer_unless_held(load_config(cfg)) as rt:
        assert rt is not None
        sender = rt.action_sender()
        await asyncio.gather(sender.send_due(), sender.send_due(), sender.send_due())
    assert [state for _, state, _ in commands(tmp_path)] == ["uncertain", "refused"]
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        stored = conn.execute("SELECT type FROM events WHERE type LIKE 'order.action%'")
        assert [t for (t,) in stored] == ["order.action_refused"]
    assert fake_ccnow.actions == []


async def test_a_character_cut_in_an_undecided_last_line_leaves_the_others_readable(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The UTF-8 check read the whole body, the undecided last line too: a ship CCNow took was
    # queued as an unreadable answer instead of settled by its order's status.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    # A column of data cut (a tracking number's `1Z`): a cut word (`M`) would be no column of
    # data, and the line no status of a documented word (tests/sources/test_ccnow_status_words.py).
    cut = f"{A} mark_shipped 2026-12-01 1Z".encode() + b"\xc3"
    fake_ccnow.after_applying = [Reply(200, cut, chunked=True)]
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped (the order's status)")]


async def test_the_refusal_behind_an_uncertain_discount_advises_a_command_that_runs(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Two CCNow accounts: the advised `ccnow resolve` without --account was a usage error.
    tables = "".join(
        f'[[ccnow]]\nname = "{name}"\nurl = "{fake_ccnow.url}"\nclient_id = "{CCNOW_CLIENT_ID}"\n'
        f'password = "{CCNOW_PASSWORD}"\ntimeout = "2s"\nretries = 0\n\n'
        for name in ("eu", "us")
    )
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n{tables}')
    cfg.chmod(0o600)
    fake_ccnow.orders = {A: "pending"}
    assert (await call_cli("--config", cfg, "track", "ccnow", A, "--account", "eu")).code == 0
    _sql(
        tmp_path,
        "INSERT INTO commands (account, order_id, action, idempotency_key, amount, state, "
        "created_at, closed_at) VALUES ('eu', ?, 'adjust', 'first', '3.00', 'uncertain', 1.0, 2.0)",
        A,
    )
    second = await ccnow(cfg, "adjust", A, "--amount", "2.00", "--account", "eu")
    assert second.code == 65, second.stdout + second.stderr
    [advice] = re.findall(r"`reconciler ([^`]*)`", second.stdout)
    assert advice == f"ccnow resolve {A} --sent|--not-sent --account eu --action adjust"
    done = await ccnow(cfg, *advice.replace("--sent|", "").split()[1:])
    assert done.code == 0, done.stdout + done.stderr
    assert fake_ccnow.actions == []
