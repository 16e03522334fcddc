"""The API's refusals of what a request is, alike on every call: a body that is JSON but no
object is a 400 (POST /orders said 422), an integer longer than Python reads is "a number too
long" (not Python's advice to call sys.set_int_max_str_digits()), and a GET of the resolve
call is its 405 (it was taken for a bad command id, 422). Real HTTP against the daemon's API."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_ccv_writes import FakeCCVWrites
from tests.server.test_api import ORDER, Api, serve_api

CALLS = [
    ("POST", "/api/v1/orders"),
    ("POST", "/api/v1/ccv/orders"),
    ("PATCH", "/api/v1/ccv/pricing"),
    ("POST", "/api/v1/ccv/submissions/resolve"),
]


@pytest.mark.parametrize(("method", "path"), CALLS)
@pytest.mark.parametrize("body", [b"[1]", b"7", b'"x"', b"null"])
async def test_a_body_that_is_no_object_is_a_400_on_every_call(
    api: Api, method: str, path: str, body: bytes
) -> None:
    status, document, _ = await api.call(method, path, raw=body)
    assert status == 400, document
    assert document == {"error": "the body must be a JSON object", "field": "$"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/orders", b'{"source": "ccv", "order_id": "%s", "n": 1%s}'),
        ("/api/v1/ccv/orders", b'{"notifyCustomerByEmail": true, "order": {"n": -1%s}}'),
    ],
)
async def test_an_integer_longer_than_python_reads_is_a_number_too_long(
    tmp_path: Path, fake: FakeCCVWrites, path: str, body: bytes
) -> None:
    digits = b"1" * 5000
    raw = body % (ORDER.encode(), digits) if body.count(b"%s") == 2 else body % digits
    async with serve_api(tmp_path, fake, api_extra="max_body = 65536") as api:
        status, document, _ = await api.call("POST", path, raw=raw)
        assert (status, document) == (
            400,
            {"error": "a number too long (more than 4,300 digits)", "field": "$"},
        )
        assert api.rows("SELECT count(*) FROM orders") == [(0,)]
        assert api.rows("SELECT count(*) FROM submissions") == [(0,)]
    assert fake.submits == []


async def test_a_get_of_the_resolve_call_is_its_405(api: Api) -> None:
    status, document, headers = await api.call("GET", "/api/v1/ccnow/actions/resolve")
    assert (status, document) == (405, {"error": "method not allowed"})
    assert headers["Allow"] == "POST"
    # A command id is still read as one.
    status, document, _ = await api.call("GET", "/api/v1/ccnow/actions/resolved")
    assert status == 422 and document["field"] == "id"
