"""CCV answering a submit with a 409 or a 5xx that names the order (its body's order id field,
in any casing the submit's own parser takes, or a `Location` pointing at an order) says CCV has
an order of the reference: the id is kept on the uncertain submission and in its
`order.submit_uncertain`, and a person's word that CCV never got the submit (`ccv resolve
--not-sent`, the API's `"sent": false`) is refused naming it. Before, the id was dropped, the
word taken, and the same reference sent again: a second order at CCV. So too for a 2xx whose
body came whole (naming its order) but whose framing then broke. Real HTTP against a fake CCV,
through the command line and the daemon's API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import call_cli, free_port, read_events, write_config
from tests.fake_ccv_writes import BodyBreaks, FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import Reply
from tests.server.test_api import TOKEN, Api, api_toml
from tests.writes.test_submit_crash import UNCERTAIN, query

ANSWERS = {
    "409-body": (
        json_reply(409, {"orderId": "ord-dup", "error": "externalReference already used"}),
        "ord-dup",
    ),
    "500-body": (json_reply(500, {"orderId": "ord-500-x", "result": "success"}), "ord-500-x"),
    "502-casing": (json_reply(502, {"OrderID": "ord-502-c"}), "ord-502-c"),
    "500-location": (
        Reply(500, "", headers={"Location": "/api/ordercompletion/reseller/order/ord-L"}),
        "ord-L",
    ),
    "200-chunk-broke": (
        BodyBreaks(200, b'{"orderId": "ord-chunk"}', "application/json", chunked=True),
        "ord-chunk",
    ),
    "201-length-broke": (
        BodyBreaks(201, b'{"orderId": "ord-len"}', "application/json"),
        "ord-len",
    ),
}


@pytest.mark.parametrize("case", list(ANSWERS))
async def test_an_answer_naming_the_order_keeps_it_and_refuses_not_sent_cli(
    tmp_path: Path, fake: FakeCCVWrites, case: str
) -> None:
    answer, named = ANSWERS[case]
    fake.submit_replies = [answer]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="named-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert "--not-sent" not in submitted.stderr, submitted.stderr
    assert query(tmp_path, "SELECT state, order_id FROM submissions") == [("uncertain", named)]
    [event] = [e for e in read_events(tmp_path) if e["type"] == UNCERTAIN]
    assert event["data"]["order_id"] == named, event
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "named-1", "--not-sent")
    assert result.code == 65, result.stderr
    assert (
        f"naming order {named}" in result.stderr
        and f"track ccv {named} --ref named-1" in result.stderr
    ), result.stderr
    assert query(tmp_path, "SELECT state, order_id FROM submissions") == [("uncertain", named)]
    again = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert again.code == 65 and "submitted already" in again.stderr, again.stderr
    assert len(fake.submits) == 1


@pytest.mark.parametrize("case", ["409-body", "500-location", "200-chunk-broke"])
async def test_an_answer_naming_the_order_keeps_it_and_refuses_not_sent_api(
    api: Api, fake: FakeCCVWrites, case: str
) -> None:
    answer, named = ANSWERS[case]
    fake.submit_replies = [answer]
    body = submit_body(externalReference="named-2")
    status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert status == answer.status, status
    assert f"naming order {named}" in headers["Reconciler-Submission-Not-Sent-Refused"]
    assert api.submission("named-2") == ("uncertain", named)
    word = {"external_reference": "named-2", "sent": False}
    status, document, _ = await api.call("POST", "/api/v1/ccv/submissions/resolve", body=word)
    assert status == 409 and f"naming order {named}" in document["error"], document
    status, document, _ = await api.call("GET", "/api/v1/ccv/submissions/named-2")
    assert (status, document["state"], document["order_id"]) == (200, "uncertain", named)
    assert (await api.call("POST", "/api/v1/ccv/orders", body=body))[0] == 409
    assert len(fake.submits) == 1


async def test_an_error_naming_no_order_is_still_closed_by_a_persons_word(
    api: Api, fake: FakeCCVWrites
) -> None:
    # A 500 naming nothing (a gateway's) proves nothing: the word closes it, as before.
    fake.submit_replies = [json_reply(500, {"error": "Server error"})]
    body = submit_body(externalReference="named-3")
    assert (await api.call("POST", "/api/v1/ccv/orders", body=body))[0] == 500
    assert api.submission("named-3") == ("uncertain", None)
    word = {"external_reference": "named-3", "sent": False}
    status, document, _ = await api.call("POST", "/api/v1/ccv/submissions/resolve", body=word)
    assert (status, document["state"]) == (200, "failed"), document


@pytest.mark.parametrize(
    "answer",
    [
        json_reply(409, {"id": "conflict", "message": "externalReference already used"}),
        json_reply(503, {"id": "maintenance", "message": "down for maintenance"}),
        Reply(302, "", headers={"Location": "https://sso.example/login?id=sess-81f2&return=%2F"}),
        Reply(307, "", headers={"Location": "https://portal.example/order/login"}),
    ],
    ids=["409-error-id", "503-gateway-id", "302-login-query", "307-order-login"],
)
async def test_an_error_s_own_id_or_a_login_redirect_names_no_order(
    api: Api, fake: FakeCCVWrites, answer: Reply
) -> None:
    # An error's own `id` or a redirect to a login page is no order of CCV's: the person's word
    # still closes it (else the advice was to track an order named `conflict`).
    fake.submit_replies = [answer]
    body = submit_body(externalReference="named-4")
    async with api.http.post(  # not followed: the daemon passes CCV's redirect on
        f"{api.url}/api/v1/ccv/orders",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        allow_redirects=False,
    ) as response:
        assert response.status == answer.status
    assert api.submission("named-4") == ("uncertain", None)
    word = {"external_reference": "named-4", "sent": False}
    status, document, _ = await api.call("POST", "/api/v1/ccv/submissions/resolve", body=word)
    assert (status, document["state"]) == (200, "failed"), document
