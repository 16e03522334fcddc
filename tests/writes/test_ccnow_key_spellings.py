"""What the 28th outside probe found in CCNow actions, against a fake CCNow on 127.0.0.1: a key
ending in `/ORDER` and a key's order part without hyphens made second discounts; `--dry-run`
printed posts the real run never sends; an undocumented status word closed a command `refused`;
a field the command does not send refused it; ids naming one order twice were merged; a
command on its way was counted `queued`. Review 28a: `R` for an order alone and `R/ORDER` for it
among others were two discounts; the command line still merged ids naming one order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_form import BadAction, from_document
from tests.conftest import free_port, write_config
from tests.fake_providers import FakeCCNow, Reply, ccnow_config
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import (
    ARGS,
    WORD,
    A,
    B,
    ccnow,
    commands,
    daemon_with_api,
    make_due,
    tracked,
)
from tests.writes.test_ccnow_answers import action_posts
from tests.writes.test_ccnow_commands_one_at_a_time import action_events


def _discounts(fake: FakeCCNow) -> list[str]:
    return [order_id for order_id, action, _ in fake.actions if action == "adjust"]


# --- 1. a key ending in /ORDER --------------------------------------------------------------


@pytest.mark.parametrize("among_first", [True, False], ids=["among-first", "alone-first"])
async def test_a_key_ending_in_its_order_is_one_discount_alone_and_among_others(
    tmp_path: Path, fake_ccnow: FakeCCNow, among_first: bool
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    runs = [[A, B], [B]] if among_first else [[B], [A, B]]
    for ids in runs:
        run = await ccnow(cfg, "adjust", *ids, "--amount", "1.00", "--key", f"R/{B}")
        assert run.code == 0, run.stdout + run.stderr
    assert f"{B} adjust succeeded: pending (command " in run.stdout
    assert "(made before with this key)" in run.stdout
    assert sorted(_discounts(fake_ccnow)) == sorted([A, B])  # B's discount posted once


@pytest.mark.parametrize("alone_first", [True, False], ids=["alone-first", "among-first"])
async def test_k_alone_and_k_ending_in_the_order_among_others_are_one_discount(
    tmp_path: Path, fake_ccnow: FakeCCNow, alone_first: bool
) -> None:
    # `R` for B alone is R/B among others; `R/B` among others is B's `R/B/B`, which is `R/B`
    # alone: all one command of B (review 28a: B was discounted twice, in either order).
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    runs = [([B], "R"), ([A, B], f"R/{B}")]
    for ids, key in runs if alone_first else runs[::-1]:
        run = await ccnow(cfg, "adjust", *ids, "--amount", "1.00", "--key", key)
        assert run.code == 0, run.stdout + run.stderr
    first = 1 if alone_first else 2
    said = f"{B} adjust succeeded: pending (command {first}) (made before with this key)"
    assert said in run.stdout
    assert sorted(_discounts(fake_ccnow)) == sorted([A, B])


async def test_a_key_kept_unhyphenated_by_an_earlier_release_still_names_its_command(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Keys are kept with their order parts hyphenated now; a store written before may hold
    # `R/396101142/396101142` (the API's `keys`, `R/ORDER` given for several orders).
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    bare = A.replace("-", "")
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        earlier = cmds.NewCommand("default", A, "adjust", f"R/{bare}/{bare}", amount="3.00")
        await cmds.record(store, [earlier], 1.0)
    finally:
        await store.close()
    for ids, key in (([A], "R"), ([A, B], f"R/{A}")):
        run = await ccnow(cfg, "adjust", *ids, "--amount", "3.00", "--key", key)
        assert run.code == 0, run.stdout + run.stderr
        assert (
            f"{A} adjust succeeded: pending (command 1) (made before with this key)" in run.stdout
        )
    assert _discounts(fake_ccnow) == [A, B]


# --- 2. a key's order part without hyphens --------------------------------------------------


async def test_the_apis_key_naming_its_order_without_hyphens_is_the_same_command(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    bare = A.replace("-", "")
    among = {"order_ids": [A], "action": "adjust", "amount": "3.00", "keys": [f"K/{bare}"]}
    async with daemon_with_api(cfg, port) as http:
        async with http.post(base, json=among) as r:
            answer: dict[str, Any] = await r.json()
            assert r.status == 202, answer
        [first] = answer["commands"]
        for key in ("K", f"K/{A}"):
            alone = {"order_id": A, "action": "adjust", "amount": "3.00", "idempotency_key": key}
            async with http.post(base, json=alone) as r:
                again = await r.json()
                assert r.status == 202, again
            assert (again["id"], again["made_before"]) == (first["id"], True), (key, again)
    assert _discounts(fake_ccnow) == [A]


async def test_a_key_given_alone_with_its_order_unhyphenated_is_that_orders_part_of_k(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    bare = A.replace("-", "")
    first = await ccnow(cfg, "adjust", bare, "--amount", "3.00", "--key", f"K/{bare}")
    assert first.code == 0, first.stdout + first.stderr
    both = await ccnow(cfg, "adjust", A, B, "--amount", "3.00", "--key", "K")
    assert both.code == 0, both.stdout + both.stderr
    assert f"{A} adjust succeeded: pending (command 1) (made before with this key)" in both.stdout
    assert _discounts(fake_ccnow) == [A, B]


# --- 3. --dry-run reads the keys as the real run does ---------------------------------------


async def test_a_dry_run_says_and_exits_what_the_real_run_does_with_a_key(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    assert (await ccnow(cfg, "adjust", A, "--amount", "3.00", "--key", "D1")).code == 0
    same = await ccnow(cfg, "adjust", A, "--amount", "3.00", "--key", "D1", "--dry-run")
    assert (same.code, same.stdout) == (0, ""), same.stdout + same.stderr
    said = f"reconciler: {A} adjust left out: made before with this key (command 1, succeeded"
    assert said in same.stderr
    other = await ccnow(cfg, "adjust", A, "--amount", "4.00", "--key", "D1", "--dry-run")
    real = await ccnow(cfg, "adjust", A, "--amount", "4.00", "--key", "D1")
    assert (other.code, real.code) == (65, 65), other.stderr + real.stderr
    assert "was given to another command (#1:" in other.stderr and other.stdout == ""
    assert _discounts(fake_ccnow) == [A]


# --- 4. an undocumented status is never guessed ---------------------------------------------


@pytest.mark.parametrize("word", ["pending review", "Pending_Review", "mark_shipped extra words"])
@pytest.mark.parametrize("action", ["adjust", "ship"])
async def test_an_undocumented_status_leaves_the_command_uncertain_for_a_person(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, word: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} {word}"]
    run = await ccnow(cfg, action, A, *ARGS[action])
    assert run.code == 75, run.stdout + run.stderr
    [(_, state, answer)] = commands(tmp_path)
    assert state == "uncertain" and repr(word) in str(answer), answer
    assert f"{A} {action} uncertain: " in run.stdout and word in run.stdout
    assert action_events(tmp_path) == ["order.action_uncertain"]
    # Not sent again (it may have taken); a person settles it.
    assert (await ccnow(cfg, action, A, *ARGS[action])).code == 75
    assert len(action_posts(fake_ccnow)) == 1
    assert (await ccnow(cfg, "resolve", A, "--sent")).code == 0
    assert commands(tmp_path)[0][1] == "sent"


async def test_a_documented_status_in_another_case_keeps_its_rules(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} COMPLETED"]
    run = await ccnow(cfg, "adjust", A, *ARGS["adjust"])
    assert run.code == 65, run.stdout + run.stderr
    assert commands(tmp_path) == [(A, "refused", "answered completed, not pending")]


# --- 5. only a field the command sends refuses it --------------------------------------------


async def test_a_line_naming_a_field_the_command_does_not_send_refuses_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    words = "error_message amount_1 too high"
    fake_ccnow.script = [Reply(200, words + "\n")]
    run = await ccnow(cfg, "add-tracking", A, *ARGS["add-tracking"])
    assert run.code == 75, run.stdout + run.stderr
    assert commands(tmp_path) == [(A, "queued", words)]
    assert action_events(tmp_path) == []
    # Sent again: CCNow takes it this time.
    await make_due(tmp_path)
    again = await ccnow(cfg, "add-tracking", A, *ARGS["add-tracking"])
    assert again.code == 0, again.stdout + again.stderr
    assert [(a, WORD["add-tracking"]) for a in [A]] == [(o, w) for o, w, _ in fake_ccnow.actions]


# --- 6. ids naming one order twice ----------------------------------------------------------


async def test_the_api_refuses_ids_naming_one_order_twice_saying_so(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    bare = A.replace("-", "")
    body = {"order_ids": [A, bare], "action": "adjust", "amount": "1.00", "keys": ["a", "b"]}
    async with daemon_with_api(cfg, port) as http, http.post(base, json=body) as r:
        answer = await r.json()
        assert (r.status, answer.get("field")) == (422, "order_ids"), answer
    assert f"name one order ({A})" in answer["error"], answer
    assert fake_ccnow.actions == []


async def test_the_command_line_refuses_ids_naming_one_order_twice_as_the_api_does(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Merged, `adjust A A'` sent one discount where one id may have been a typo for another.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    bare = A.replace("-", "")
    run = await ccnow(cfg, "adjust", A, B, bare, "--amount", "1.00", "--key", "K")
    assert run.code == 65, run.stdout + run.stderr
    assert f"order ids '{A}' and '{bare}' name one order ({A}): give each order once" in run.stderr
    assert (commands(tmp_path), fake_ccnow.actions) == ([], [])


# --- 7. a command on its way ----------------------------------------------------------------


async def test_a_command_on_its_way_is_said_and_counted_sending(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    body = {"order_id": A, "action": "adjust", "amount": "3.00", "idempotency_key": "K"}
    async with daemon_with_api(cfg, port) as http:
        fake_ccnow.hold = asyncio.Event()

        async def first() -> int:
            async with http.post(base, json=body) as r:
                return r.status

        posting = asyncio.create_task(first())
        await fake_ccnow.wait_until(lambda: action_posts(fake_ccnow) != [])
        run = await ccnow(cfg, "adjust", A, "--amount", "3.00", "--key", "K")
        fake_ccnow.hold.set()
        assert await posting == 202
    assert run.code == 75, run.stdout + run.stderr
    line = f"{A} adjust sending: on its way, no answer yet (command 1) (made before with this key)"
    assert line in run.stdout
    assert "queued 0, sending 1" in run.stderr, run.stderr
    assert _discounts(fake_ccnow) == [A]


# --- review 28e: a key's own /ORDER parts are all outside the 200 characters ---------------


def test_a_long_key_ending_in_its_own_order_takes_every_own_part_outside_the_limit() -> None:
    # `adjust A B --key <200 characters ending /111223333>` through the daemon: B's key came as
    # KEY/111-22-3333/111-22-3333 (214 characters) and only the last part was left out of the
    # limit: "keys: at most 212 characters", a field the user never gave. Without a daemon the
    # same line was taken.
    cfg = ccnow_config("http://127.0.0.1:9/cgi")
    given = "k" * 190 + "/111223333"
    doc: dict[str, object] = {
        "order_ids": ["396-10-1142", "111-22-3333"],
        "action": "adjust",
        "amount": "1",
        "keys": [f"{given}/396-10-1142", "k" * 190 + "/111-22-3333/111-22-3333"],
    }
    made = from_document(cfg, doc)
    assert [c.key for c in made][1] == "k" * 190 + "/111-22-3333/111-22-3333"
    # The key's own words still count: 201 of them are refused, naming the field given.
    doc["keys"] = [f"{'k' * 201}/396-10-1142", f"{'k' * 201}/111-22-3333"]
    with pytest.raises(BadAction, match="keys: at most"):
        from_document(cfg, doc)


# --- review 28j: at most two own /ORDER parts are outside the 200 characters ---------------


def test_a_key_made_long_by_repeating_its_own_order_is_refused() -> None:
    # Every trailing part naming the key's own order was left out of the limit: 190 characters
    # and 3000 x `/396101142` were taken, a 30,000-character key kept in the database, the
    # events and the log. Two parts, what the command line makes, still are.
    cfg = ccnow_config("http://127.0.0.1:9/cgi")
    doc: dict[str, object] = {"order_ids": ["396-10-1142"], "action": "adjust", "amount": "1"}
    doc["keys"] = ["k" * 190 + "/396101142" * 3000]
    with pytest.raises(BadAction, match="keys: at most"):
        from_document(cfg, doc)
    doc["keys"] = ["k" * 200 + "/396101142" * 3]
    with pytest.raises(BadAction, match="keys: at most"):
        from_document(cfg, doc)
    doc["keys"] = ["k" * 200 + "/396101142/396-10-1142"]
    assert [c.key for c in from_document(cfg, doc)] == ["k" * 200 + "/396-10-1142" * 2]


# --- review 28l: the limit a refused key is told is README's 200 ---------------------------


def test_a_key_over_the_limit_is_told_the_200_characters_readme_names() -> None:
    # It was told "keys: at most 220 characters": the limit plus the parts excused, a number
    # that changes with the order's id and that README gives nowhere.
    cfg = ccnow_config("http://127.0.0.1:9/cgi")
    doc: dict[str, object] = {"order_ids": ["396-10-1142"], "action": "adjust", "amount": "1"}
    doc["keys"] = ["k" * 201 + "/396101142/396-10-1142"]
    with pytest.raises(BadAction) as refused:
        from_document(cfg, doc)
    assert str(refused.value) == (
        "keys: at most 200 characters besides up to two /ORDER parts of its own order"
    )
