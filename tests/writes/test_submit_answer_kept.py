"""What CCV's answer to a submit proved outlives that answer: an order it named exists (a
"not found" right after is CCV not consistent yet, confirmed only minutes later, as for an
order found before), and the `Location` it gave is kept with the submission, its event and
its log line, masked as the header passed on is. Real HTTP against a fake CCV."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.conftest import call_cli, free_port, read_events, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import CCV_KEY, Reply
from tests.server.test_api import TOKEN, Api, api_toml
from tests.writes.test_submit_crash import query

NEW_ORDER = "5d0e7c1a-2b3f-4a6d-9e8c-7f1a2b3c4d5e"


async def test_an_order_ccv_named_is_not_reported_missing_at_its_first_check(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # CCV answers 201 with the id, and its status endpoint does not know it yet (its own 404).
    fake.submit_replies = [json_reply(201, {"orderId": NEW_ORDER})]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="fresh-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (submitted.code, submitted.stdout.strip()) == (0, NEW_ORDER), submitted.stderr
    for run in range(2):
        caught_up = await call_cli("--config", cfg, "catch-up")
        # A failed check (75), saying why, not an `order.not_found` about an order CCV made.
        assert caught_up.code == 75, caught_up.stderr
        assert ("not_found_unconfirmed" in caught_up.stderr) == (run == 0), caught_up.stderr
        assert [e for e in read_events(tmp_path) if e["type"] == "order.not_found"] == []
        assert query(tmp_path, "SELECT not_found FROM orders") == [(0,)]
    # CCV knows it now: its first status is its discovery.
    fake.orders[NEW_ORDER] = "Processing"
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    statuses = [e["data"]["status"] for e in read_events(tmp_path) if e["subject"] == NEW_ORDER]
    assert statuses == ["Processing"]


SEE_OTHER = f"/api/ordercompletion/reseller/order/{NEW_ORDER}?key={CCV_KEY}"


@pytest.mark.parametrize(
    "answer",
    [
        Reply(303, "", headers={"Location": SEE_OTHER}),
        Reply(200, "<html>Sign in</html>", "text/html", headers={"Location": SEE_OTHER}),
    ],
    ids=["303", "200-page"],
)
async def test_ccvs_location_is_kept_masked(
    api: Api, fake: FakeCCVWrites, answer: Reply, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake.submit_replies = [answer]
    # As CCV answered it, not followed (the test's client would follow a 303).
    async with api.http.post(
        f"{api.url}/api/v1/ccv/orders",
        json=submit_body(externalReference="moved-1"),
        headers={"Authorization": f"Bearer {TOKEN}"},
        allow_redirects=False,
    ) as response:
        assert response.status == answer.status
    masked = f"{fake.base_url}/api/ordercompletion/reseller/order/{NEW_ORDER}?key=***"
    status, document, _ = await api.call("GET", "/api/v1/ccv/submissions/moved-1")
    assert status == 200 and document["state"] == "uncertain"
    assert document["location"] == masked
    (event,) = api.rows(
        "SELECT json_extract(body, '$.data.location') FROM events "
        "WHERE type = 'order.submit_uncertain'"
    )
    assert event == (masked,)
    lines = [r for r in caplog.records if r.getMessage() == "ccv.submit_no_order_id"]
    if answer.status == 200:
        assert [r.fields["location"] for r in lines] == [masked]  # type: ignore[attr-defined]
    # A location is in a line's fields, not in its text (`caplog.text`): masked there, in
    # every line of the submit.
    said = [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]
    assert CCV_KEY not in repr(said)
    assert api.rows("SELECT count(*) FROM submissions WHERE location LIKE ?", f"%{CCV_KEY}%") == [
        (0,)
    ]
