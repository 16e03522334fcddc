"""An adjust's `amount` through the daemon's API: USD as text, at most 2 decimals, read by the
command line's rule; a JSON number is taken for its value (`7.5` is 7.50, `1e1` is 10.00) by
the same rule, so a number with more decimals is refused naming the field (422, nothing
recorded or sent), as its text would be. Real HTTP against a daemon and a fake CCNow."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from tests.conftest import free_port, write_config
from tests.fake_providers import FakeCCNow
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import daemon_with_api

A = "396-10-1142"
BODY = '{"order_id": "%s", "action": "adjust", "idempotency_key": "%s", "amount": %s}'
REFUSED = ["7.505", "-5", "0", '"1e1"', '"7.505"', '"-5"', '"10.0.0"', "true", "[7]", "{}"]
TAKEN = {"7.5": "7.50", "1e1": "10.00", '"10.00"': "10.00"}


async def test_an_amount_is_taken_as_usd_text_or_its_number_and_refused_naming_it(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    headers = {"Content-Type": "application/json"}
    answers = {}
    async with daemon_with_api(cfg, port) as http:
        for n, amount in enumerate(REFUSED):
            refused = BODY % (A, f"R-{n}", amount)
            async with http.post(base, data=refused.encode(), headers=headers) as r:
                answers[amount] = (r.status, await r.json())
        for n, amount in enumerate(TAKEN):
            taken = BODY % (A, f"T-{n}", amount)
            async with http.post(base, data=taken.encode(), headers=headers) as r:
                assert r.status == 202, (amount, await r.text())
    for amount, (status, body) in answers.items():
        assert (status, body.get("field")) == (422, "amount"), (amount, body)
        assert body["error"].startswith("amount: "), (amount, body)
    # Neither a string nor a number: told that a number is taken too.
    wanted = "amount: must be a number or a string (USD, at most 2 decimals)"
    assert [answers[a][1]["error"] for a in ("true", "[7]", "{}")] == [wanted] * 3
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        kept = conn.execute("SELECT idempotency_key, amount FROM commands ORDER BY id").fetchall()
    assert kept == [(f"T-{n}", usd) for n, usd in enumerate(TAKEN.values())]
