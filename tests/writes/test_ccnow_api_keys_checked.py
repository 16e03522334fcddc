"""What the 27th review found in CCNow actions' keys, against a fake CCNow on 127.0.0.1: a key
`K` given to another order alone since stood in the way of this order's own `K/ORDER`; the API's
`keys` skipped the checks of `--key` (untrimmed: a second discount; a secret: kept)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import free_port, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow
from tests.server.test_api import TOKEN, api_toml
from tests.writes.test_ccnow_actions import A, B, C, ccnow, commands, daemon_with_api, tracked


def _discounts(fake: FakeCCNow) -> list[str]:
    return [order_id for order_id, action, _ in fake.actions if action == "adjust"]


async def test_a_key_given_to_another_order_alone_since_still_names_this_orders_command(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # `adjust A B --key K` keeps K/A and K/B; `adjust C --key K` a new `K`, C's alone.
    fake_ccnow.orders = {A: "pending", B: "pending", C: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B, C)
    for ids in ([A, B], [C]):
        run = await ccnow(cfg, "adjust", *ids, "--amount", "3.00", "--key", "K")
        assert run.code == 0, run.stdout + run.stderr
    # The same request for A again is A's first command, not C's `K` given to another.
    again = await ccnow(cfg, "adjust", A, "--amount", "3.00", "--key", "K")
    assert again.code == 0, again.stdout + again.stderr
    assert f"{A} adjust succeeded: pending (command 1) (made before with this key)" in again.stdout
    both = await ccnow(cfg, "adjust", B, C, "--amount", "3.00", "--key", "K")
    assert both.code == 0, both.stdout + both.stderr
    assert f"{B} adjust succeeded: pending (command 2) (made before with this key)" in both.stdout
    assert f"{C} adjust succeeded: pending (command 3) (made before with this key)" in both.stdout
    assert _discounts(fake_ccnow) == [A, B, C]
    # Asking A something else under K is still that key given to another command.
    other = await ccnow(cfg, "adjust", A, "--amount", "4.00", "--key", "K")
    assert other.code == 65 and "was given to another command (#1:" in other.stderr, other.stderr
    assert _discounts(fake_ccnow) == [A, B, C]


async def _post(http: Any, base: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post(base, json=body) as r:
        return r.status, await r.json()


async def test_the_apis_keys_are_trimmed_as_idempotency_key_is(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    among = {"order_ids": [A], "action": "adjust", "amount": "3.00", "keys": ["K "]}
    alone = {"order_id": A, "action": "adjust", "amount": "3.00", "idempotency_key": "K"}
    async with daemon_with_api(cfg, port) as http:
        status, answer = await _post(http, base, among)
        first = answer["commands"][0]
        assert (status, first["key"], first["made_before"]) == (202, "K", False), answer
        status, second = await _post(http, base, alone)
        assert (status, second["id"], second["made_before"]) == (202, first["id"], True), second
        # Two entries the same once trimmed are one key given twice.
        twice = {**among, "order_ids": [A, B], "keys": ["K2", " K2"]}
        status, body = await _post(http, base, twice)
        assert (status, body.get("field")) == (422, "keys"), body
    assert _discounts(fake_ccnow) == [A]
    assert len(commands(tmp_path)) == 1


async def test_the_apis_keys_holding_a_secret_or_too_long_are_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    refused = [[f"x-{TOKEN}"], [f"{CCNOW_PASSWORD}/{A}"], ["k" * 201], [""], ["a\tb"]]
    async with daemon_with_api(cfg, port) as http:
        for keys in refused:
            body = {"order_ids": [A], "action": "adjust", "amount": "3.00", "keys": keys}
            status, answer = await _post(http, base, body)
            assert (status, answer.get("field")) == (422, "keys"), (keys, answer)
            assert TOKEN not in str(answer) and CCNOW_PASSWORD not in str(answer)
        # The command line hands the daemon `KEY/ORDER`: a key of 200 characters still goes.
        run = await ccnow(cfg, "adjust", A, B, "--amount", "3.00", "--key", "k" * 200)
        assert run.code == 0, run.stdout + run.stderr
    assert sorted(_discounts(fake_ccnow)) == [A, B]
    kept = [(tmp_path / name).read_bytes() for name in ("reconciler.db", "events.jsonl")]
    for secret in (TOKEN, CCNOW_PASSWORD):
        assert all(secret.encode() not in data for data in kept), secret
