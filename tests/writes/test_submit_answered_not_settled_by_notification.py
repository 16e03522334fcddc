"""A CCV submit that CCV answered with a 2xx but reconciler could not follow (no usable order id,
or an order followed under another reference) stays uncertain whatever CCV notifies: CCV
notifies the new order at once, and a notification names no order, so it cannot say which order
CCV made. Only the order tracked with the reference (`track ccv ID --ref REF`, the API's track)
settles it. Before, the first notification resolved it with no order: the to-do left `status`
and nothing followed the order. The daemon's API over HTTP against a fake CCV."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from reconciler.model import EventType
from tests.conftest import call_cli
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import ORDER, Api

UNCERTAIN = EventType.SUBMIT_UNCERTAIN.value
RESOLVED = EventType.SUBMIT_RESOLVED.value
MADE = "9e8d7c6b-5a49-4382-a716-0f1e2d3c4b5a"  # the order CCV made, found by a person


async def notify(api: Api, reference: str) -> None:
    """CCV's notification for a reference, as the receiver hands it to the daemon."""
    await api.daemon.hub.check_ccv_reference("default", reference, 0.0)


async def ccv_to_do(tmp_path: Path) -> tuple[int, str]:
    """What `status` says waits for a person in the CCV account: (uncertain, its to-do)."""
    cfg = tmp_path / "reconciler.toml"
    (account,) = [
        a
        for a in json.loads((await call_cli("--config", cfg, "status", "--json")).stdout)[
            "accounts"
        ]
        if a["source"] == "ccv"
    ]
    text = (await call_cli("--config", cfg, "status")).stdout
    row = next((line for line in text.splitlines() if "--ref" in line), "")
    return account["uncertain_writes"], row


async def settled_by_track(api: Api, reference: str) -> None:
    """Track the order CCV made with the reference: the submission is settled, by `track`."""
    body = {"source": "ccv", "order_id": MADE, "external_reference": reference}
    status, _, _ = await api.call("POST", "/api/v1/orders", body=body)
    assert status == 201
    assert api.submission(reference) == ("resolved", MADE)
    (how,) = api.rows(
        "SELECT json_extract(body, '$.data.how') FROM events WHERE type = ?", RESOLVED
    )
    assert how == ("track",)


async def test_a_2xx_without_an_order_id_is_not_settled_by_ccvs_notifications(
    tmp_path: Path, api: Api, fake: FakeCCVWrites
) -> None:
    fake.submit_hold = asyncio.Event()
    fake.submit_replies = [json_reply(201, {"status": "created"})]
    body = submit_body(externalReference="N-1")
    pending = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=body))
    await fake.wait_until(lambda: len(fake.submits) == 1, 10)
    await notify(api, "N-1")  # CCV notifies the new order while its answer is on its way
    fake.submit_hold.set()
    status, _, headers = await pending
    assert status == 201 and "Reconciler-Order-Id" not in headers
    await notify(api, "N-1")  # and again, for its next status
    assert api.submission("N-1") == ("uncertain", None)
    assert api.rows("SELECT type FROM events ORDER BY seq") == [(UNCERTAIN,)]
    uncertain, row = await ccv_to_do(tmp_path)
    assert uncertain == 1 and "(N-1)" in row
    # CCV's 201 and its notification say it made the order: the person's word is refused.
    assert "(refused, saying why, where CCV's answer or a notification said it made" in row
    await settled_by_track(api, "N-1")


async def test_an_order_followed_elsewhere_is_not_settled_by_ccvs_notification(
    tmp_path: Path, api: Api, fake: FakeCCVWrites
) -> None:
    track = {"source": "ccv", "order_id": ORDER, "external_reference": "R-1"}
    assert (await api.call("POST", "/api/v1/orders", body=track))[0] == 201
    fake.submit_replies = [json_reply(201, {"orderId": ORDER})]
    body = submit_body(externalReference="R-2")
    status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert status == 201 and "Reconciler-Order-Id" not in headers
    await notify(api, "R-2")  # the order CCV made for R-2 tells of its status
    assert api.submission("R-2") == ("uncertain", None)
    assert api.rows("SELECT type FROM events WHERE type LIKE 'order.submit%'") == [(UNCERTAIN,)]
    uncertain, row = await ccv_to_do(tmp_path)
    assert uncertain == 1 and "(R-2)" in row
    await settled_by_track(api, "R-2")
    assert api.rows("SELECT order_id, external_reference FROM orders ORDER BY order_id") == [
        (ORDER, "R-1"),
        (MADE, "R-2"),
    ]


async def test_a_server_error_is_still_settled_by_the_notification(
    api: Api, fake: FakeCCVWrites
) -> None:
    # A 5xx may come with or without an order made: the notification tells that it exists.
    fake.submit_replies = [json_reply(500, {"error": "Server error"})]
    body = submit_body(externalReference="L-1")
    assert (await api.call("POST", "/api/v1/ccv/orders", body=body))[0] == 500
    await notify(api, "L-1")
    assert api.submission("L-1") == ("resolved", None)
