"""POST /api/v1/orders takes `"relink": true`, as `track ccv ID --ref REF --relink`: an order
followed under one reference is moved to another only when asked, its old reference kept as
its alias, and an uncertain submit of the new reference whose answer named the order is
settled. Without it an API client was told to run the command line. Real HTTP against the
daemon's API and a fake CCV."""

from __future__ import annotations

import logging

import pytest

from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import ORDER, Api


async def test_relink_moves_an_order_to_another_reference_only_when_asked(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reconciler.api")
    fake.submit_replies = [json_reply(201, {"orderId": ORDER})] * 2
    for reference in ("R-1", "R-2"):
        body = submit_body(externalReference=reference)
        assert (await api.call("POST", "/api/v1/ccv/orders", body=body))[0] == 201
    assert api.submission("R-2") == ("uncertain", None)
    track = {"source": "ccv", "order_id": ORDER, "external_reference": "R-2"}
    status, document, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert status == 409 and '"relink": true' in document["error"], document
    status, document, _ = await api.call("POST", "/api/v1/orders", body={**track, "relink": 1})
    assert (status, document["field"]) == (422, "relink")
    status, document, _ = await api.call("POST", "/api/v1/orders", body={**track, "relink": True})
    assert status == 200, document
    assert document["external_reference"] == "R-2"
    assert api.rows("SELECT external_reference FROM orders") == [("R-2",)]
    assert api.rows("SELECT reference, order_id FROM order_aliases") == [("R-1", ORDER)]
    assert api.submission("R-2") == ("resolved", ORDER)
    (line,) = [r for r in caplog.records if r.getMessage() == "order.reference_relinked"]
    said = line.fields  # type: ignore[attr-defined]
    assert (said["previous_reference"], said["external_reference"]) == ("R-1", "R-2")
    # Again: nothing left to move.
    status, _, _ = await api.call("POST", "/api/v1/orders", body={**track, "relink": True})
    assert status == 200
    assert len([r for r in caplog.records if r.getMessage() == "order.reference_relinked"]) == 1
