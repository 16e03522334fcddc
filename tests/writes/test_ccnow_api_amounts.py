"""An adjust's `amount` through the daemon's API is read by one rule, the command line's: USD as
text, at most 2 decimals. A JSON number is refused naming the field (422, nothing recorded or
sent): decoded, it is a float, whose text is not what was written (`1e1` was taken as 10.0 while
the string "1e1" was refused). Real HTTP against a daemon and a fake CCNow on 127.0.0.1."""

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
NUMBERS = ["1e1", "10", "7.5", "7.50", "-0", "1E2", "0.1e2"]
NOT_USD = ['"1e1"', '"7.505"', '"-5"', '"10.0.0"']


async def test_an_amount_that_is_no_usd_text_is_refused_naming_it(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    headers = {"Content-Type": "application/json"}
    answers = {}
    async with daemon_with_api(cfg, port) as http:
        for n, amount in enumerate([*NUMBERS, *NOT_USD]):
            refused = BODY % (A, f"K-{n}", amount)
            async with http.post(base, data=refused.encode(), headers=headers) as r:
                answers[amount] = (r.status, await r.json())
        # The same discount as USD text is taken.
        taken = BODY % (A, "K-text", '"10.00"')
        async with http.post(base, data=taken.encode(), headers=headers) as r:
            assert r.status == 202, await r.text()
    for amount, (status, body) in answers.items():
        assert (status, body.get("field")) == (422, "amount"), (amount, body)
        assert body["error"].startswith("amount: "), (amount, body)
    for amount in NUMBERS:
        assert "a string" in answers[amount][1]["error"], answers[amount]
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        kept = conn.execute("SELECT idempotency_key, amount FROM commands").fetchall()
    assert kept == [("K-text", "10.00")]
    assert [(o, a, f["x_amount"]) for o, a, f in fake_ccnow.actions] == [(A, "adjust", "10.00")]
