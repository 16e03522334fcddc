"""`reconciler ccv submit` and `ccv check-pricing` for scripts: a submit CCV answered without a
usable order id is uncertain (exit 75, no id printed), with and without a running daemon; a
number the body could not pass on exactly is refused (exit 65) before anything is recorded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.store import WriterLock
from tests.conftest import call_cli, daemon_here, free_port, read_events, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import FakeCCNow, Reply
from tests.server.test_api import PUBLIC_URL, RECEIVER_SECRET, api_toml
from tests.writes.test_submit_crash import UNCERTAIN, listening, query

# With the reason kept: an answer naming its order under an id reconciler cannot use says CCV
# made it (`ccv resolve --not-sent` refuses it); one naming none proves nothing.
NO_ORDER_ID = [
    (json_reply(200, {"result": "ok"}), "no_order_id"),
    (Reply(202, ""), "no_order_id"),
    (json_reply(201, {"orderId": "../../admin?x=1#f"}), "unusable_order_id"),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


@pytest.mark.parametrize(("reply", "reason"), NO_ORDER_ID)
async def test_a_2xx_without_an_order_id_exits_75_and_prints_no_id(
    tmp_path: Path, fake: FakeCCVWrites, reply: Reply, reason: str
) -> None:
    fake.submit_replies = [reply]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="no-id-7")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "no-id-7 is uncertain" in result.stderr and "Traceback" not in result.stderr
    assert query(tmp_path, "SELECT state FROM submissions") == [("uncertain",)]
    assert [e["data"]["reason"] for e in read_events(tmp_path) if e["type"] == UNCERTAIN] == [
        reason
    ]


# A `201 Created` naming its order by a Location alone: where a person finds the order.
CREATED_THERE = Reply(201, "", headers={"Location": "/orders/7f3a"})


async def test_a_2xx_without_an_order_id_names_its_location(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [CREATED_THERE]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="no-id-9")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert f"(HTTP 201 (Location: {fake.base_url}/orders/7f3a))" in result.stderr
    assert "no-id-9 is uncertain" in result.stderr


async def test_through_a_running_daemon_too(tmp_path: Path, fake: FakeCCVWrites) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    fake.submit_replies = [CREATED_THERE]
    stdin = json.dumps(submit_body(externalReference="no-id-8")).encode()
    async with daemon_here(cfg):
        await listening(port)
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "no-id-8 is uncertain" in result.stderr
    assert f"(Location: {fake.base_url}/orders/7f3a)" in result.stderr
    assert query(tmp_path, "SELECT state FROM submissions") == [("uncertain",)]


@pytest.mark.parametrize("text", ["1e999", "1e-400", "99999999999999.99"])
async def test_a_number_that_cannot_be_passed_on_exactly_exits_65_naming_it(
    tmp_path: Path, fake: FakeCCVWrites, text: str
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    raw = json.dumps(submit_body(order={"x": "N"})).replace('"N"', text).encode()
    for args in (("--config", cfg, "ccv", "submit", "-"), ("ccv", "check-pricing", "-")):
        result = await call_cli(*args, stdin=raw)
        assert result.code == 65, result.stderr
        assert text in result.stderr and "Traceback" not in result.stderr
    assert fake.submits == []
    assert query(tmp_path, "SELECT count(*) FROM submissions") in ([], [(0,)])


async def test_a_store_held_by_another_command_sends_nothing_and_says_so(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # A catch-up (not a daemon) holds the store: the command finds no API listening.
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    lock = WriterLock(tmp_path / "reconciler.db")
    lock.acquire()
    try:
        stdin = json.dumps(submit_body(externalReference="held-1")).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    finally:
        lock.release()
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "nothing was sent" in result.stderr and "submit_uncertain" not in result.stderr
    assert fake.submits == []


async def test_without_an_api_a_store_held_by_another_command_blames_no_daemon(
    tmp_path: Path, fake: FakeCCVWrites, fake_ccnow: FakeCCNow
) -> None:
    # A catch-up holds the store and the config has no [api]: nothing was sent, and the
    # message says another process holds it, not a daemon that may not run.
    receiver = (
        f'[receiver]\nlisten = "127.0.0.1:{free_port()}"\npublic_url = "{PUBLIC_URL}"\n'
        f'secret = "{RECEIVER_SECRET}"\n'
    )
    cfg = write_config(tmp_path, ccv=fake, ccnow=fake_ccnow, extra=receiver)
    lock = WriterLock(tmp_path / "reconciler.db")
    lock.acquire()
    try:
        stdin = json.dumps(submit_body(externalReference="held-2")).encode()
        submit = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        ship = await call_cli("--config", cfg, "ccnow", "ship", "396-10-1142")
    finally:
        lock.release()
    for result in (submit, ship):
        assert result.code == 75, result.stderr
        assert "another reconciler process holds the store" in result.stderr, result.stderr
        assert "nothing was sent" in result.stderr
        # The [api] missing is this config's; the holder may be a daemon with one.
        assert "this config has no [api]" in result.stderr
        assert "a daemon without [api]" not in result.stderr
    assert fake.submits == [] and fake_ccnow.actions == []


async def test_ccvs_429_is_try_later_and_the_reference_may_be_sent_again(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # Too many requests: nothing was made, and nothing is wrong with the body.
    fake.submit_replies = [json_reply(429, {"message": "Too Many Requests"})]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="busy-1")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "HTTP 429" in result.stderr
    assert query(tmp_path, "SELECT state, http_status FROM submissions") == [("failed", 429)]
    again = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert again.code == 0 and again.stdout.strip() in fake.orders


async def test_an_unusable_first_id_field_leaves_the_next_one_to_read(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    order_id = "0b7c2a4e-8f0b-4d57-9a8e-2c1d3b5e7a90"
    fake.submit_replies = [json_reply(201, {"orderId": "", "id": order_id})]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="two-ids")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout.strip()) == (0, order_id), result.stderr
    assert query(tmp_path, "SELECT order_id, external_reference FROM orders") == [
        (order_id, "two-ids")
    ]
