"""What the integration API passes on, both ways, over real HTTP against a fake CCV: the numbers
of a body reach CCV as the numbers that were written and checked (or the body is refused before
anything is recorded), and what CCV answers comes back with any secret it echoed masked."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest

from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCV_KEY, Reply
from tests.server.test_api import GOOD_PRICES, TOKEN, Api

# Numbers that a float does not hold: CCV would get infinity (not JSON), 0, or other digits.
NOT_PASSED_ON = [
    "1e999",
    "-1E999",
    "1e-400",
    "99999999999999.99",
    "123456789012345678901234567890.5",
    "0.1000000000000000055511151231257827",
    # An exponent of more digits than a Decimal takes (was a 500: InvalidOperation).
    "1e-99999999999999999999",
]
# Numbers that reach CCV as the value written, if not in the same spelling.
PASSED_ON = [
    "0.1",
    "1.50",
    "1E22",
    "-0.0",
    "5e-324",
    "0e-400",
    "12345678901234567890123456789",
]


def with_number(body: dict[str, Any], text: str) -> bytes:
    """Return `body` as JSON with `"order": {"x": <text>}`, the number spelled as given."""
    raw = json.dumps({**body, "order": {"x": "NUMBER"}})
    return raw.replace('"NUMBER"', text).encode()


@pytest.mark.parametrize("text", NOT_PASSED_ON)
async def test_a_number_ccv_would_get_otherwise_is_a_400_naming_it_and_costs_nothing(
    api: Api, fake: FakeCCVWrites, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for method, path, body in (
        ("POST", "/api/v1/ccv/orders", submit_body(externalReference="num-1")),
        ("PATCH", "/api/v1/ccv/pricing", GOOD_PRICES),
    ):
        status, document, _ = await api.call(method, path, raw=with_number(body, text))
        assert (status, document["field"]) == (400, "$"), document
        assert text[:30] in document["error"], document
    assert fake.submits == [] and fake.pricing_calls == []
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_every_other_number_reaches_ccv_as_the_value_written(
    api: Api, fake: FakeCCVWrites
) -> None:
    for i, text in enumerate(PASSED_ON):
        body = submit_body(externalReference=f"num-{i}")
        status, _, _ = await api.call("POST", "/api/v1/ccv/orders", raw=with_number(body, text))
        assert status == 201, text
        status, _, _ = await api.call(
            "PATCH", "/api/v1/ccv/pricing", raw=with_number(GOOD_PRICES, text)
        )
        assert status == 200, text
    received = [call["order"]["x"] for call in fake.submits + fake.pricing_calls]
    # The fake decodes as Python does: the shortest text of what it got is the value sent.
    assert [Decimal(repr(x)) for x in received] == [Decimal(t) for t in PASSED_ON * 2]
    # The pricing check sees the same values: an amount with a cent float cannot hold is refused
    # before it is checked, not checked as one number and sent as another.
    prices = json.dumps({**GOOD_PRICES, "shippingCost": 1}).replace(
        '"shippingCost": 1', '"shippingCost": 99999999999999.99'
    )
    status, document, _ = await api.call("PATCH", "/api/v1/ccv/pricing", raw=prices.encode())
    assert status == 400 and "99999999999999.99" in document["error"]
    assert len(fake.pricing_calls) == len(PASSED_ON)
    # Zero, whatever its exponent (one of more digits than a Decimal takes was a 500).
    raw = with_number(GOOD_PRICES, "0.00e99999999999999999999")
    status, _, _ = await api.call("PATCH", "/api/v1/ccv/pricing", raw=raw)
    assert status == 200 and fake.pricing_calls[-1]["order"]["x"] == 0.0


# CCV's error answers echoing the key: as it was sent, in a text that is not UTF-8 (with lower-case
# percent escapes and stars of its own, which stay as they are), cut inside the key by CCV.
ECHOES = [
    json.dumps({"message": f"invalid order; apiKey={CCV_KEY}"}).encode(),
    b"<p>caf\xe9 %2f *** " + CCV_KEY.encode() + b"</p>",
    b'{"message": "invalid key ' + CCV_KEY[:10].encode(),
]


@pytest.mark.parametrize("echo", ECHOES)
async def test_a_key_ccv_echoes_is_masked_in_the_answer_passed_back_and_nothing_else(
    api: Api, fake: FakeCCVWrites, echo: bytes
) -> None:
    fake.submit_replies = [Reply(400, echo, "application/json")]
    fake.pricing_replies = [Reply(400, echo, "text/html")]
    cut = CCV_KEY[:10].encode()
    expected = echo.replace(CCV_KEY.encode(), b"***")
    expected = expected[: -len(cut)] + b"***" if expected.endswith(cut) else expected
    for method, path, body in (
        ("POST", "/api/v1/ccv/orders", submit_body(externalReference="echo-1")),
        ("PATCH", "/api/v1/ccv/pricing", GOOD_PRICES),
    ):
        async with api.http.request(
            method, api.url + path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response:
            assert (response.status, await response.read()) == (400, expected)
    assert len(fake.submits) == len(fake.pricing_calls) == 1


async def test_a_key_ccv_echoes_percent_encoded_is_masked_in_the_answer_passed_back(
    api: Api, fake: FakeCCVWrites
) -> None:
    # Every character an encoder may escape, `_` and `-` too, in either case of hex digit.
    encoded = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in CCV_KEY)
    assert encoded.startswith("t%5F")
    echo = json.dumps({"message": f"bad key {encoded} or {encoded.lower()}"}).encode()
    fake.submit_replies = [Reply(400, echo, "application/json")]
    status, document, _ = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="echo-2")
    )
    assert (status, document) == (400, {"message": "bad key *** or ***"})


async def test_a_success_answer_holding_a_long_integer_beside_its_order_id_is_followed(
    api: Api, fake: FakeCCVWrites
) -> None:
    # Legal JSON past int()'s 4,300 digits, in a field reconciler does not read: the order id
    # beside it is read as a status answer's would be, not lost (the order made but unfollowed).
    long_integer = "7" * 5000
    answer = b'{"orderId": "CCV-77", "total": ' + long_integer.encode() + b"}"
    fake.submit_replies = [Reply(201, answer, "application/json")]
    async with api.http.request(
        "POST",
        api.url + "/api/v1/ccv/orders",
        json=submit_body(externalReference="long-1"),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert (response.status, await response.read()) == (201, answer)
        assert response.headers["Reconciler-Order-Id"] == "CCV-77"
    assert api.submission("long-1") == ("succeeded", "CCV-77")
    assert api.rows("SELECT order_id, external_reference FROM orders") == [("CCV-77", "long-1")]
    assert api.rows("SELECT type FROM events") == []
