"""What the integration API passes back of CCV's answers (probe 41), over real HTTP against a
fake CCV that answers raw bytes where aiohttp's server would refuse to: a header of CCV's that
cannot be sent (a control character, no latin-1 letter) or that is no valid value is left out
instead of failing the whole answer after the submit was recorded; a secret CCV echoed in a
JSON escape, or in a header, is masked; a status no client can take is reconciler's 502."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from reconciler.writes.ccv_http import masked_answer
from reconciler.writes.submit_outcome import own_from_header
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCV_KEY, Raw, Reply
from tests.server.test_api import GOOD_PRICES, Api, api_toml


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


async def test_a_location_too_long_to_send_is_left_out_and_kept_with_the_submission(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # 5 KiB: read (header lines up to 64 KiB), but over what a client takes passed on.
    where = "http://h/order/" + "a" * 5000
    location = f"Location: {where}\r\nContent-Type: application/json\r\n".encode()
    fake.submit_replies = [raw("303 See Other", location, b"{}")]
    status, document, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="loc-1")
    )
    assert (status, document) == (303, {})
    assert "Location" not in headers
    assert headers["Reconciler-Submission-State"] == "uncertain"
    # Reconciler's refusal of `--not-sent` quotes the Location's start: left out with CCV's
    # header, `ccv submit` advised `--not-sent` (then submit again) for an order CCV made.
    refused = own_from_header(headers["Reconciler-Submission-Not-Sent-Refused"])
    assert f"HTTP 303 See Other and Location {where[:512]}\u2026: it made the order" in refused
    # The submission still says where CCV pointed, as `GET /ccv/submissions/{ref}` shows it.
    status, stored, _ = await api.call("GET", "/api/v1/ccv/submissions/loc-1")
    assert (status, stored["state"], stored["location"]) == (200, "uncertain", where)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# A Location with a byte that is no UTF-8 or a control character (on a 201 or a 500: the test's
# client would follow a 303): yarl dropped the byte
# (`a\xffb` became `ab`), and one yarl cannot read (a port out of range) was kept with it: the
# submission could not be written (stuck `sending`, a 500, `ccv submit` exit 70). Each such
# byte is its percent escape, the rest as yarl writes a URL.
ODD_LOCATIONS = [
    ("201 Created", b"http://h:99999/order/a\xffb", "http://h:99999/order/a%FFb"),
    ("201 Created", b"http://h/order/a\xffb", "http://h/order/a%FFb"),
    ("201 Created", b"http://h:99999/order/a\x01b", "http://h:99999/order/a%01b"),
    ("201 Created", "http://h:99999/order/a\u20acb".encode(), "http://h:99999/order/a%E2%82%ACb"),
    ("500 Oops", b"http://h:99999/order/a\xffb", "http://h:99999/order/a%FFb"),
    # One yarl fails on with an IndexError, not a ValueError (was: a traceback out of _send).
    ("201 Created", b"http://[::1]@/order/CCV-1", "http:///order/CCV-1"),
]


@pytest.mark.parametrize(("status_line", "location", "kept"), ODD_LOCATIONS)
async def test_a_location_with_a_byte_that_is_no_utf8_is_kept_and_passed_on_escaped(
    api: Api,
    fake: FakeCCVWrites,
    status_line: str,
    location: bytes,
    kept: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    line = b"Location: " + location + b"\r\nContent-Type: application/json\r\n"
    fake.submit_replies = [raw(status_line, line)]
    fake.pricing_replies = [raw(status_line, line, b"{}")]
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="loc-2")
    )
    assert (status, headers["Location"]) == (int(status_line.split()[0]), kept)
    state = "succeeded" if status == 201 else "uncertain"
    assert api.rows("SELECT state, location FROM submissions") == [(state, kept)]
    status, _, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert headers["Location"] == kept
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_ccv_submit_keeps_a_location_with_a_byte_that_is_no_utf8(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    line = b"Location: http://h:99999/order/a\xffb\r\nContent-Type: application/json\r\n"
    fake.submit_replies = [raw("201 Created", line)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="loc-3")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (0, "CCV-1\n"), result.stderr
    assert "Traceback" not in result.stderr


async def test_reconcilers_own_headers_are_not_masked_as_ccvs_are(
    api: Api, fake: FakeCCVWrites
) -> None:
    # `INV-7-t_f` ends with the key's first three characters: masked as CCV's header, it
    # came back `INV-7-***`, unlike the reference the database keeps.
    fake.submit_replies = [raw("201 Created", b"Content-Type: application/json\r\n")]
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="INV-7-t_f")
    )
    assert (status, headers["Reconciler-External-Reference"]) == (201, "INV-7-t_f")
    assert api.submission("INV-7-t_f") == ("succeeded", "CCV-1")


async def test_a_content_type_too_long_for_a_client_is_replaced_not_a_lost_answer(
    api: Api, fake: FakeCCVWrites
) -> None:
    # 10 KB: aiohttp's client refused the whole answer ("Got more than 8190 bytes"), and
    # `ccv submit` through the daemon said CCV did not answer a submit that succeeded.
    line = b"Content-Type: application/json; x=" + b"a" * 10240 + b"\r\n"
    fake.submit_replies = [raw("201 Created", line)]
    fake.pricing_replies = [raw("200 OK", line, b'{"message": "set"}')]
    status, document, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="ct-2")
    )
    assert (status, document) == (201, {"orderId": "CCV-1"})
    assert headers["Content-Type"] == "application/octet-stream"
    status, document, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert (status, document) == (200, {"message": "set"})
    assert headers["Content-Type"] == "application/octet-stream"


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


# RFC 9110's three date forms, which a recipient must all read: passed on as IMF-fixdate.
RETRY_AFTERS_PASSED = [
    ("120", "120"),
    ("Wed, 02 Dec 2026 07:00:00 GMT", "Wed, 02 Dec 2026 07:00:00 GMT"),
    ("Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 GMT"),
]


@pytest.mark.parametrize(("value", "passed"), RETRY_AFTERS_PASSED)
async def test_a_retry_after_of_seconds_or_an_http_date_is_passed_back(
    api: Api, fake: FakeCCVWrites, value: str, passed: str
) -> None:
    line = f"Content-Type: application/json\r\nRetry-After: {value}\r\n".encode()
    fake.submit_replies = [raw("429 Too Many Requests", line, b"{}")]
    fake.pricing_replies = [raw("429 Too Many Requests", line, b"{}")]
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="ra-2")
    )
    assert (status, headers["Retry-After"]) == (429, passed)
    status, _, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert (status, headers["Retry-After"]) == (429, passed)


async def test_a_secret_in_ccvs_content_type_or_location_is_not_passed_back(
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
    # A Retry-After that holds it is no date: left out whatever the masking does.
    line = f"Location: /order/o-1?key={CCV_KEY}\r\n".encode()
    fake.pricing_replies = [raw("201 Created", line, b"{}")]
    status, _, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert status == 201
    assert CCV_KEY not in json.dumps(dict(headers))
    assert headers["Location"] == f"{fake.base_url}/order/o-1?key=***"


# CCV's JSON answers echoing the key in escapes json.dumps never writes: a .NET serializer's
# `\u002B`, PHP's `\/`, every letter escaped, or the whole answer in UTF-16.
PLUS_KEY = "t_Ab+Cd/Ef=Gh12"
ESCAPED_ECHOES = [
    b'{"message": "key t_Ab\\u002BCd/Ef=Gh12 is not allowed"}',
    b'{"message": "key t_Ab+Cd\\/Ef=Gh12"}',
    b'{"t_Ab\\u002bCd\\/Ef=Gh12": ["\\u0074\\u005f\\u0041b+Cd/Ef=Gh12"], "n": 1.50}',
    '{"message": "key t_Ab+Cd/Ef=Gh12"}'.encode("utf-16"),
    '{"message": "key t_Ab+Cd/Ef=Gh12"}'.encode("utf-32-le"),
]


@pytest.mark.parametrize("echo", ESCAPED_ECHOES)
def test_a_key_echoed_in_a_json_escape_is_masked_and_the_answer_written_again(
    echo: bytes,
) -> None:
    masked, again = masked_answer(echo, [PLUS_KEY])
    assert again
    document = json.loads(masked.decode("utf-8"))
    assert PLUS_KEY not in json.dumps(document, ensure_ascii=False)
    assert "***" in json.dumps(document)
    # The rest as it came: a number keeps its spelling.
    if b"1.50" in echo:
        assert masked.endswith(b'"n": 1.50}')


def test_an_answer_without_a_key_in_an_escape_is_passed_on_byte_for_byte() -> None:
    for body in (
        b'{"message": "caf\\u00e9 \\/ ok", "n": 1.50}',
        '{"message": "ok"}'.encode("utf-16"),
        b"<p>t_Ab\\u002BCd</p> not json",
    ):
        assert masked_answer(body, [PLUS_KEY]) == (body, False)


ESCAPED_KEY = CCV_KEY.replace("_", "\\u005f").replace("-", "\\u002D")


async def test_a_key_ccv_echoes_in_a_json_escape_is_masked_in_the_answer_passed_back(
    api: Api, fake: FakeCCVWrites
) -> None:
    echo = json.dumps({"message": "invalid key KEY"}).replace("KEY", ESCAPED_KEY)
    fake.submit_replies = [Reply(400, echo, "application/json")]
    utf16 = b"Content-Type: application/json; charset=utf-16\r\n"
    fake.pricing_replies = [raw("400 Bad Request", utf16, echo.encode("utf-16"))]
    for method, path, body in (
        ("POST", "/api/v1/ccv/orders", submit_body(externalReference="esc-1")),
        ("PATCH", "/api/v1/ccv/pricing", GOOD_PRICES),
    ):
        status, document, headers = await api.call(method, path, body=body)
        assert (status, document) == (400, {"message": "invalid key ***"})
        assert headers["Content-Type"] == "application/json; charset=utf-8"


async def test_ccv_submit_prints_a_key_echoed_in_a_json_escape_masked(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    echo = json.dumps({"message": "invalid key KEY"}).replace("KEY", ESCAPED_KEY)
    fake.submit_replies = [Reply(400, echo, "application/json")]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="esc-2")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 65, result.stderr
    assert "invalid key ***" in result.stderr, result.stderr
    assert "fake" not in result.stderr.replace("fake-ccv", ""), result.stderr


# A status no client takes passed on: a 101 switches the connection to another protocol (the
# client waits on it for ever), and one past 599 is no HTTP status.
ODD_STATUSES = [
    ("101 Switching Protocols", b"Upgrade: websocket\r\nConnection: Upgrade\r\n"),
    ("600 Weird", b"Content-Type: application/json\r\nLocation: /order/o-600\r\n"),
]


@pytest.mark.parametrize(("status_line", "headers"), ODD_STATUSES)
async def test_a_status_outside_200_to_599_is_reconcilers_502_with_where_it_stands(
    api: Api, fake: FakeCCVWrites, status_line: str, headers: bytes
) -> None:
    status = status_line.split()[0]
    fake.submit_replies = [raw(status_line, headers, b"{}")]
    fake.pricing_replies = [raw(status_line, headers, b"{}")]
    answered, document, got = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="odd-1")
    )
    own = f"CCV answered HTTP {status}, which cannot be passed on"
    assert (answered, document) == (502, {"error": own})
    assert got["Reconciler-Submission-State"] == "uncertain"
    assert got["Reconciler-External-Reference"] == "odd-1"
    assert got["Reconciler-Submission-Own-Answer"] == own
    assert "Location" not in got and "Upgrade" not in got
    assert api.rows("SELECT state, reason FROM submissions") == [("uncertain", f"http_{status}")]
    answered, document, got = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert (answered, document) == (502, {"error": own})
    assert got["Reconciler-Pricing-Warnings"] == "0"


async def test_a_location_ending_in_a_secrets_first_letters_is_passed_back_as_it_came(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    # `CCV-t_f` ends with the key's first three characters: CCV's headers are masked as its
    # body is, from the 8th character on (was: `CCV-***` passed back and kept, and
    # `ccv.submit_location_differs` logged though the body names the same order).
    caplog.set_level(logging.DEBUG)
    line = b"Location: /order/CCV-t_f\r\nContent-Type: application/json\r\n"
    fake.submit_replies = [raw("201 Created", line, b'{"orderId": "CCV-t_f"}')]
    fake.pricing_replies = [raw("201 Created", line, b"{}")]
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="loc-5")
    )
    where = f"{fake.base_url}/order/CCV-t_f"
    assert (status, headers["Location"]) == (201, where)
    assert api.rows("SELECT state, order_id, location FROM submissions") == [
        ("succeeded", "CCV-t_f", where)
    ]
    assert "ccv.submit_location_differs" not in [r.msg for r in caplog.records]
    status, _, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert (status, headers["Location"]) == (201, where)


# A tab (or a line end, folded) inside a Location is no part of the URL a client reads of it
# (the URL standard drops every ASCII tab and newline, as yarl did before 30c): kept as `%09`,
# it named order `CCV-\t1`, another than the body's `CCV-1` (`ccv.submit_location_differs`),
# and a Location that no client would follow there.
TABBED_LOCATIONS = [
    (b"/order/CCV-\t1", "/order/CCV-1"),
    (b"/order/CCV-1?\tx=1", "/order/CCV-1?x=1"),
    (b"ht\ttp://h:99999/order/CCV-1", "http://h:99999/order/CCV-1"),  # no URL yarl reads
]


@pytest.mark.parametrize(("location", "kept"), TABBED_LOCATIONS)
async def test_a_tab_inside_a_location_is_dropped_not_kept_escaped(
    api: Api, fake: FakeCCVWrites, location: bytes, kept: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    line = b"Location: " + location + b"\r\nContent-Type: application/json\r\n"
    fake.submit_replies = [raw("201 Created", line)]
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="tab-1")
    )
    where = kept if kept.startswith("http:") else f"{fake.base_url}{kept}"
    assert (status, headers["Location"]) == (201, where)
    assert api.rows("SELECT state, order_id, location FROM submissions") == [
        ("succeeded", "CCV-1", where)
    ]
    assert "ccv.submit_location_differs" not in [r.msg for r in caplog.records]
