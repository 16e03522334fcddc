"""`Reconciler-External-Reference` is percent-encoded as the other reconciler headers are: a
reference beyond ASCII went out as raw UTF-8, which a client reads as latin-1 (mojibake) or
refuses. Real HTTP against the daemon's API and a fake CCV."""

from __future__ import annotations

import pytest

from reconciler.writes.submit_outcome import REFERENCE_HEADER, own_from_header
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import Api


@pytest.mark.parametrize(
    ("reference", "sent"),
    [("café-№1", "caf%C3%A9-%E2%84%961"), ("50%-off", "50%25-off"), ("shop-5", "shop-5")],
)
async def test_the_reference_header_is_percent_encoded(
    api: Api, fake: FakeCCVWrites, reference: str, sent: str
) -> None:
    fake.submit_replies = [json_reply(500, {"error": "Server error"})]
    body = submit_body(externalReference=reference)
    status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert status == 500 and headers[REFERENCE_HEADER] == sent
    assert own_from_header(headers[REFERENCE_HEADER]) == reference
    # reconciler's own answer (409: submitted already) says it the same way.
    status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert status == 409 and headers[REFERENCE_HEADER] == sent
