"""An order followed under one external reference is not moved to another in silence: a CCV
submit whose answer names it is left uncertain (its event names both references), and `track
ccv ID --ref OTHER` (or the API's track) is refused unless `--relink` says so. The same
reference again stays idempotent. Real HTTP against a fake CCV, the command line as scripts
run it."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.model import EventType
from tests.conftest import call_cli, free_port, read_events, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import ORDER, Api, api_toml
from tests.writes.test_submit_crash import query

UNCERTAIN = EventType.SUBMIT_UNCERTAIN.value


async def test_a_submit_answered_with_an_order_followed_elsewhere_is_uncertain(
    api: Api, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [json_reply(201, {"orderId": ORDER})] * 2
    first = await api.call("POST", "/api/v1/ccv/orders", body=submit_body(externalReference="R-1"))
    assert first[0] == 201 and first[2]["Reconciler-Order-Id"] == ORDER
    status, document, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="R-2")
    )
    assert (status, document) == (201, {"orderId": ORDER})  # CCV's answer, passed back
    assert "Reconciler-Order-Id" not in headers
    assert api.submission("R-2") == ("uncertain", None)
    # The order stays R-1's: its notifications and events are not R-2's.
    assert api.rows("SELECT order_id, external_reference FROM orders") == [(ORDER, "R-1")]
    assert api.rows("SELECT count(*) FROM order_aliases") == [(0,)]
    (reason,) = api.rows(
        "SELECT json_extract(body, '$.data.reason') FROM events WHERE type = ?", UNCERTAIN
    )
    assert reason[0].startswith("order_followed_elsewhere:")
    assert ORDER in reason[0] and "R-1" in reason[0] and "R-2" in reason[0]
    _, state, _ = await api.call("GET", "/api/v1/ccv/submissions/R-2")
    assert (state["state"], state["reason"]) == ("uncertain", reason[0])
    # Tracking it under R-2 through the API is refused too; under R-1 it is the same order.
    track = {"source": "ccv", "order_id": ORDER, "external_reference": "R-2"}
    status, document, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert status == 409 and "R-1" in document["error"]
    status, _, _ = await api.call(
        "POST", "/api/v1/orders", body={**track, "external_reference": "R-1"}
    )
    assert status == 200
    assert api.rows("SELECT external_reference FROM orders") == [("R-1",)]
    assert api.submission("R-2") == ("uncertain", None)


async def test_ccv_submit_exits_75_and_prints_no_id(tmp_path: Path, fake: FakeCCVWrites) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "R-1")).code == 0
    fake.submit_replies = [json_reply(201, {"orderId": ORDER})]
    stdin = json.dumps(submit_body(externalReference="R-2")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "R-2 is uncertain" in result.stderr
    # What settles it: CCV's notifications name no order, so not they.
    assert "until you find its order at CCV and run `reconciler track" in result.stderr
    assert query(tmp_path, "SELECT external_reference FROM orders") == [("R-1",)]
    events = [e for e in read_events(tmp_path) if e["type"] == UNCERTAIN]
    assert [e["data"]["external_reference"] for e in events] == ["R-2"]


async def test_track_with_another_reference_is_refused_unless_relinked(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake)
    track = ("--config", cfg, "track", "ccv", ORDER)
    assert (await call_cli(*track, "--ref", "R-1")).code == 0
    assert (await call_cli(*track, "--ref", "R-1")).code == 0  # the same again: idempotent
    refused = await call_cli(*track, "--ref", "R-2")
    assert refused.code == 65
    assert "followed under reference R-1" in refused.stderr and "--relink" in refused.stderr
    assert query(tmp_path, "SELECT external_reference FROM orders") == [("R-1",)]
    (tmp_path / "ids.csv").write_text(f"{ORDER},R-3\n")
    from_file = await call_cli("--config", cfg, "track", "ccv", "--from-file", tmp_path / "ids.csv")
    assert from_file.code == 65 and "R-1" in from_file.stderr
    # Explicit: moved, the old reference kept as its alias (its notification URL still checks
    # the order), and a warning names both.
    relinked = await call_cli(*track, "--ref", "R-2", "--relink")
    assert relinked.code == 0, relinked.stderr
    assert "order.reference_relinked" in relinked.stderr and "R-1" in relinked.stderr
    assert query(tmp_path, "SELECT external_reference FROM orders") == [("R-2",)]
    assert query(tmp_path, "SELECT reference, order_id FROM order_aliases") == [("R-1", ORDER)]
