"""What the integration API passes back of CCV's answers (probe 41), over real HTTP against a
fake CCV that answers raw bytes where aiohttp's server would refuse to: a header of CCV's that
cannot be sent (a control character, no latin-1 letter) or that is no valid value is left out
instead of failing the whole answer after the submit was recorded; a secret CCV echoed in a
JSON escape, or in a header, is masked; a status no client can take is reconciler's 502."""

from __future__ import annotations

import json
import logging

import pytest

from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCV_KEY, Raw
from tests.server.test_api import GOOD_PRICES, Api


def raw(status_line: str, headers: bytes, body: bytes = b'{"orderId": "CCV-1"}') -> Raw:
    """CCV's answer as these bytes exactly: a status line, header lines (each ending in CRLF),
    and `body` with its length."""
    head = f"HTTP/1.1 {status_line}\r\n".encode() + headers
    return Raw(raw=head + b"Content-Length: %d\r\n\r\n" % len(body) + body)


# Header lines aiohttp's server refuses to send on: a control character (kept by aiohttp's
# client), a byte that is no UTF-8 (read as a surrogate), a letter beyond latin-1.
UNSENDABLE_CONTENT_TYPES = [
    b"Content-Type: application/json;\x01\r\n",
    b"Content-Type: application/json;\x7f\r\n",
    b"Content-Type: application/json\xff\r\n",
]


@pytest.mark.parametrize("line", UNSENDABLE_CONTENT_TYPES)
async def test_a_content_type_that_cannot_be_sent_is_replaced_not_a_dropped_answer(
    api: Api, fake: FakeCCVWrites, line: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.submit_replies = [raw("201 Created", line)]
    fake.pricing_replies = [raw("200 OK", line, b'{"message": "set"}')]
    status, document, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="ct-1")
    )
    assert (status, document) == (201, {"orderId": "CCV-1"})
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Reconciler-Submission-State"] == "succeeded"
    assert api.submission("ct-1") == ("succeeded", "CCV-1")
    status, document, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert (status, document) == (200, {"message": "set"})
    assert headers["Content-Type"] == "application/octet-stream"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_location_that_cannot_be_sent_is_left_out_and_kept_with_the_submission(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A port yarl refuses: passed on as it came (less any user), a control character in it.
    location = b"Location: http://h:99999/order/a\x01b\r\nContent-Type: application/json\r\n"
    fake.submit_replies = [raw("303 See Other", location, b"{}")]
    status, document, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="loc-1")
    )
    assert (status, document) == (303, {})
    assert "Location" not in headers
    assert headers["Reconciler-Submission-State"] == "uncertain"
    # The submission still says where CCV pointed, as `GET /ccv/submissions/{ref}` shows it.
    status, stored, _ = await api.call("GET", "/api/v1/ccv/submissions/loc-1")
    assert (status, stored["state"], stored["location"]) == (
        200,
        "uncertain",
        "http://h:99999/order/a\x01b",
    )
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


RETRY_AFTERS = [
    b"\x01Wed, 02 Dec 2026 07:00:00 GMT",
    # Python's date reader takes these; no HTTP date is any of them.
    b"Wed, 02 Dec 2026 07:00:00 GMT junk",
    b"2 Dec 2026 07:00:00 -0000",
    b"5 seconds",
]


@pytest.mark.parametrize("value", RETRY_AFTERS)
async def test_a_retry_after_that_is_no_http_date_nor_seconds_is_left_out(
    api: Api, fake: FakeCCVWrites, value: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    line = b"Content-Type: application/json\r\nRetry-After: " + value + b"\r\n"
    slow = b'{"error": "slow down"}'
    fake.submit_replies = [raw("429 Too Many Requests", line, slow)]
    fake.pricing_replies = [raw("429 Too Many Requests", line, slow)]
    for method, path, body in (
        ("POST", "/api/v1/ccv/orders", submit_body(externalReference="ra-1")),
        ("PATCH", "/api/v1/ccv/pricing", GOOD_PRICES),
    ):
        status, document, headers = await api.call(method, path, body=body)
        assert (status, document) == (429, {"error": "slow down"})
        assert "Retry-After" not in headers
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_retry_after_of_seconds_or_an_http_date_is_passed_back(
    api: Api, fake: FakeCCVWrites
) -> None:
    for value in ("120", "Wed, 02 Dec 2026 07:00:00 GMT"):
        line = f"Content-Type: application/json\r\nRetry-After: {value}\r\n".encode()
        fake.pricing_replies = [raw("429 Too Many Requests", line, b"{}")]
        status, _, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
        assert (status, headers["Retry-After"]) == (429, value)


async def test_a_secret_in_ccvs_content_type_or_retry_after_is_not_passed_back(
    api: Api, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [
        raw("201 Created", f"Content-Type: application/json; {CCV_KEY}\r\n".encode())
    ]
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="hk-1")
    )
    assert status == 201
    assert CCV_KEY not in headers["Content-Type"]
    assert headers["Content-Type"] == "application/json; ***"
    line = f"Retry-After: Wed, 02 Dec 2026 07:00:00 {CCV_KEY}\r\n".encode()
    fake.pricing_replies = [raw("429 Too Many Requests", line, b"{}")]
    status, _, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert status == 429
    assert CCV_KEY not in json.dumps(dict(headers))
    assert "Retry-After" not in headers
