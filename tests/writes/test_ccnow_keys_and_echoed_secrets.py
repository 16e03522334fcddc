"""What the 21st outside probe found in CCNow actions, against a fake CCNow on 127.0.0.1: a key
given for one order and then for it among others (`K` and `K/ORDER`) made a second discount; an
adjust or tracking upload answered with a status other than `pending` was `succeeded`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from tests.conftest import call_cli, daemon_here, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow, Reply
from tests.server.test_api import GOOD_PRICES, RECEIVER_SECRET, TOKEN, Api, api_toml
from tests.writes.test_ccnow_actions import A, B, ccnow, commands, daemon_with_api, tracked
from tests.writes.test_ccnow_commands_one_at_a_time import action_events
from tests.writes.test_submit_crash import listening, query


def _discounts(fake: FakeCCNow) -> list[str]:
    return [order_id for order_id, action, _ in fake.actions if action == "adjust"]


# --- 1. one key, one order, one command --------------------------------------------------------


@pytest.mark.parametrize("first", [[A], [A, B]], ids=["alone-first", "among-others-first"])
async def test_a_key_for_an_order_alone_and_among_others_is_one_discount(
    tmp_path: Path, fake_ccnow: FakeCCNow, first: list[str]
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    second = [A, B] if first == [A] else [A]
    for ids in (first, second):
        run = await ccnow(cfg, "adjust", *ids, "--amount", "3.00", "--key", "refund-9")
        assert run.code == 0, run.stdout + run.stderr
    assert f"{A} adjust succeeded: pending (command 1) (made before with this key)" in run.stdout
    assert sorted(_discounts(fake_ccnow)) == sorted({A, B})
    # The other form asking something else is that key given to another command: refused.
    other = await ccnow(cfg, "adjust", *second, "--amount", "4.00", "--key", "refund-9")
    assert other.code == 65 and "was given to another command" in other.stderr, other.stderr
    assert sorted(_discounts(fake_ccnow)) == sorted({A, B})


async def test_a_key_for_another_order_alone_is_not_this_orders_command(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # `K` kept for B alone does not stand for A's part of `K` given for A and B.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    assert (await ccnow(cfg, "adjust", B, "--amount", "3.00", "--key", "K")).code == 0
    both = await ccnow(cfg, "adjust", A, B, "--amount", "3.00", "--key", "K")
    assert both.code == 0, both.stdout + both.stderr
    assert _discounts(fake_ccnow) == [B, A]
    assert f"{B} adjust succeeded: pending (command 1) (made before with this key)" in both.stdout
    assert f"{A} adjust succeeded: pending (command 2)\n" in both.stdout


@pytest.mark.parametrize("single_first", [True, False])
async def test_the_api_takes_order_id_and_order_ids_with_one_key_as_one_discount(
    tmp_path: Path, fake_ccnow: FakeCCNow, single_first: bool
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    alone = {"order_id": A, "action": "adjust", "amount": "3.00", "idempotency_key": "refund-9"}
    among = {"order_ids": [A, B], "action": "adjust", "amount": "3.00", "key": "refund-9"}
    bodies = (alone, among) if single_first else (among, alone)
    async with daemon_with_api(cfg, port) as http:
        answers = []
        for body in bodies:
            async with http.post(base, json=body) as r:
                assert r.status == 202, await r.text()
                answers.append(await r.json())
    made = {c["order_id"]: c for answer in answers for c in answer["commands"]}
    assert made[A]["made_before"] is True and made[A]["outcome"] == "succeeded"
    assert sorted(_discounts(fake_ccnow)) == [A, B]
    assert len(commands(tmp_path)) == 2


# --- 2. an action answered with a status other than pending ----------------------------------


@pytest.mark.parametrize("status", ["completed", "refunded", "paypal_hold"])
@pytest.mark.parametrize(
    "action",
    [["adjust", "--amount", "3.00"], ["add-tracking", "--carrier", "DHL", "--number", "1"]],
)
async def test_an_action_answered_with_its_order_past_pending_is_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow, status: str, action: list[str]
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} {status}"]
    run = await ccnow(cfg, action[0], A, *action[1:])
    assert run.code == 65, run.stdout + run.stderr
    words = f"answered {status}, not pending"
    word = {"adjust": "adjust", "add-tracking": "track"}[action[0]]
    assert f"{A} {word} refused: {words} (command 1)" in run.stdout
    assert commands(tmp_path) == [(A, "refused", words)]
    assert action_events(tmp_path) == ["order.action_refused"]


# --- 3. a provider's answer echoing a secret of the config -----------------------------------

NOTIFICATION_TOKEN = "ccnow-notification-token-5e2f"
# Every secret of the config below but the account's own, which was looked for already.
OTHERS = [CCNOW_PASSWORD, TOKEN, RECEIVER_SECRET, NOTIFICATION_TOKEN]


def _config_with_every_secret(tmp_path: Path, ccv: FakeCCVWrites, ccnow: FakeCCNow) -> Path:
    extra = api_toml(free_port())
    token = f'notification_token = "{NOTIFICATION_TOKEN}"\n'
    return write_config(tmp_path, ccv=ccv, ccnow=ccnow, ccnow_extra=token, extra=extra)


def _kept_nowhere(tmp_path: Path, secret: str, *outputs: str) -> None:
    for text in outputs:
        assert secret not in text
    for path in (tmp_path / "reconciler.db", tmp_path / "events.jsonl"):
        if path.exists():
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("secret", OTHERS)
async def test_a_ccv_order_id_echoing_a_secret_of_the_config_is_not_taken(
    tmp_path: Path, fake_ccnow: FakeCCNow, secret: str
) -> None:
    async with FakeCCVWrites() as fake:
        cfg = _config_with_every_secret(tmp_path, fake, fake_ccnow)
        fake.submit_replies = [json_reply(201, {"orderId": secret})]
        stdin = json.dumps(submit_body(externalReference="echo-21")).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        assert (result.code, result.stdout) == (75, ""), result.stderr
        assert "echo-21 is uncertain" in result.stderr
        assert fake.requests_for(secret) == []  # no status GET with it in its path
    assert query(tmp_path, "SELECT state FROM submissions") == [("uncertain",)]
    assert query(tmp_path, "SELECT count(*) FROM orders") == [(0,)]
    _kept_nowhere(tmp_path, secret, result.stderr)


@pytest.mark.parametrize("secret", [CCV_KEY, TOKEN, RECEIVER_SECRET, NOTIFICATION_TOKEN])
async def test_a_ccnow_answer_line_echoing_a_secret_of_the_config_is_no_status(
    tmp_path: Path, fake_ccnow: FakeCCNow, secret: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.pending_statuses = set()  # asked about on its own, not read off the list
    async with FakeCCVWrites() as fake:
        cfg = _config_with_every_secret(tmp_path, fake, fake_ccnow)
        assert (await call_cli("--config", cfg, "track", "ccnow", A)).code == 0
        fake_ccnow.queries = Reply(200, f"{A} {secret}\n")
        polled = await call_cli("--config", cfg, "catch-up", "--source", "ccnow")
        assert polled.code == 75, polled.stderr
        fake_ccnow.queries = None
        fake_ccnow.actions_answer = [f"{A} {secret}"]
        shipped = await ccnow(cfg, "ship", A)
    # The line is no status: the order's own status, read then, says the ship took.
    assert shipped.code == 0, shipped.stdout + shipped.stderr
    assert f"{A} ship succeeded: mark_shipped (the order's status)" in shipped.stdout
    _kept_nowhere(tmp_path, secret, polled.stdout, polled.stderr, shipped.stdout, shipped.stderr)


@pytest.mark.parametrize("secret", OTHERS)
@pytest.mark.parametrize("field", ["orderStatus", "externalReference"])
async def test_a_ccv_status_answer_echoing_a_secret_of_the_config_is_kept_nowhere(
    tmp_path: Path, fake_ccnow: FakeCCNow, secret: str, field: str
) -> None:
    # The account's API key was looked for already; CCV may echo any secret it was sent.
    ids = ["order-a", "order-b"]
    async with FakeCCVWrites() as fake:
        fake.orders = dict.fromkeys(ids, "New")
        document = {"orderStatus": "New", "externalReference": "ref-b", field: secret}
        fake.replies["order-b"] = Reply(200, json.dumps(document), "application/json")
        cfg = _config_with_every_secret(tmp_path, fake, fake_ccnow)
        assert (await call_cli("--config", cfg, "track", "ccv", *ids)).code == 0
        polled = await call_cli("--config", cfg, "catch-up", "--source", "ccv")
        listed = await call_cli("--config", cfg, "orders", "--json")
    # That order's check failed, as for an answer holding the API key; the other is known.
    assert polled.code == 75, polled.stderr
    orders = {o["order_id"]: o["status"] for o in json.loads(listed.stdout)}
    assert orders == {"order-a": "New", "order-b": None}, orders
    _kept_nowhere(tmp_path, secret, polled.stdout, polled.stderr, listed.stdout)


# --- 4. CCV's 429 passed back as it is -------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "passed"),
    [
        ("7", "7"),
        ("Wed, 02 Dec 2026 01:00:00 GMT", "Wed, 02 Dec 2026 01:00:00 GMT"),
        ("soon", None),
    ],
)
async def test_the_api_passes_back_ccvs_retry_after(
    api: Api, fake: FakeCCVWrites, wait: str, passed: str | None
) -> None:
    body = json.dumps({"message": "Too many requests"})
    busy = Reply(429, body, "application/json", headers={"Retry-After": wait})
    fake.submit_replies, fake.pricing_replies = [busy], [busy]
    for method, path, document in (
        ("POST", "/api/v1/ccv/orders", submit_body(externalReference="busy-1")),
        ("PATCH", "/api/v1/ccv/pricing", GOOD_PRICES),
    ):
        status, answer, headers = await api.call(method, path, body=document)
        assert (status, answer) == (429, {"message": "Too many requests"}), path
        assert headers.get("Retry-After") == passed, path


# --- 5. a reference submitted already names its order ----------------------------------------


@pytest.mark.parametrize("through_daemon", [False, True])
async def test_a_second_submit_of_a_reference_names_the_order_it_made(
    tmp_path: Path, through_daemon: bool
) -> None:
    # A submit a SIGTERM ended after CCV's answer was recorded printed no id: the run again
    # is the way to learn it.
    port = free_port()
    stdin = json.dumps(submit_body(externalReference="again-5")).encode()
    async with FakeCCVWrites() as fake:
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
        first = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        assert first.code == 0, first.stderr
        order_id = first.stdout.strip()
        async with contextlib.AsyncExitStack() as stack:
            if through_daemon:
                await stack.enter_async_context(daemon_here(cfg))
                await listening(port)
            again = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (again.code, again.stdout) == (65, ""), again.stderr
    assert (
        "external reference again-5 was submitted already (its submit is succeeded: order "
        f"{order_id}); not sent again"
    ) in again.stderr
    assert len(fake.submits) == 1
