"""What the integration API reads of a request, over real HTTP: one meaning per request (a JSON
key, a query parameter or the Authorization header given twice is refused, not read as the
first or the last), errors that quote what was given only in part, and the orders of an account
the config no longer names, which stay readable and can be untracked."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from multidict import CIMultiDict

from reconciler.model import SHOWN_INPUT_MAX
from tests.conftest import call_cli, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import FakeCCNow
from tests.server.test_api import ORDER, TOKEN, Api, serve_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with FakeCCVWrites() as fake, serve_api(tmp_path, fake) as api:
        yield api


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        # Read as the last: a CCV order was tracked where the body said CCNow first.
        ("/api/v1/orders", b'{"source": "ccnow", "source": "ccv", "order_id": "A-1"}'),
        ("/api/v1/orders", b'{"source": "ccv", "order_id": "A-1", "account": "x", "account": "y"}'),
        ("/api/v1/ccv/orders", json.dumps(submit_body())[:-1].encode() + b', "order": {}}'),
    ],
    ids=["source", "account", "nested-submit"],
)
async def test_a_body_naming_a_key_twice_is_refused_naming_it(
    api: Api, path: str, raw: bytes
) -> None:
    status, body, _ = await api.call("POST", path, raw=raw)
    assert (status, body["field"]) == (400, "$"), body
    assert "is given twice in one object" in body["error"]
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]


async def test_a_body_nested_too_deep_is_refused_saying_so_as_the_command_line_does(
    api: Api,
) -> None:
    # The API said "malformed JSON: not JSON", the command line "not JSON: maximum recursion
    # depth exceeded while decoding a JSON array from a unicode string".
    deep = b"[" * 2000 + b"]" * 2000  # within the API's max_body (4096 bytes)
    status, body, _ = await api.call("POST", "/api/v1/ccv/orders", raw=deep)
    assert (status, body) == (400, {"error": "malformed JSON: it nests too deep", "field": "$"})
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]


async def test_a_query_parameter_given_twice_is_refused(api: Api) -> None:
    # ?account=eu&account=us took the first, where a body's repeated key took the last.
    for path in (
        f"/api/v1/orders/ccv/{ORDER}?account=default&account=other",
        "/api/v1/ccv/submissions/ref-1?account=default&account=default",
        "/api/v1/events?limit=1&limit=2",
    ):
        status, body, _ = await api.call("GET", path)
        assert status == 400, (path, body)
        assert body["error"] == "given more than once"
    status, body, _ = await api.call("POST", "/api/v1/ccv/orders?account=a&account=b", body={})
    assert (status, body["field"]) == (400, "account")
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]


async def test_two_authorization_headers_are_refused(api: Api) -> None:
    # aiohttp reads the first; a proxy before it may have checked the last.
    headers = CIMultiDict([("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer x")])
    async with api.http.get(f"{api.url}/api/v1/events", headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["field"] == "Authorization"


async def test_an_account_that_is_not_a_string_is_told_so(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/api/v1/orders", body={"source": "ccv", "order_id": "A-1", "account": 5}
    )
    assert (status, body) == (422, {"error": "must be a string", "field": "account"})


@pytest.mark.parametrize(
    ("method", "path", "doc"),
    [
        ("POST", "/api/v1/orders", {"source": "ccnow", "order_id": "9" * 3000}),
        ("POST", "/api/v1/orders", {"source": "ccv", "order_id": "/" * 3000}),
        ("POST", "/api/v1/orders", {"source": "ccv", "order_id": "A-1", "k" * 3000: 1}),
        ("GET", "/api/v1/orders/ccv/" + "x" * 3000, None),
        ("POST", "/api/v1/ccv/submissions/resolve", {"k" * 3000: 1}),
    ],
    ids=["ccnow-id", "ccv-id", "unknown-key", "path-id", "resolve-key"],
)
async def test_an_error_quotes_a_long_input_cut_short(
    api: Api, method: str, path: str, doc: object
) -> None:
    # A 1 MB order id or unknown key came back whole in the 422.
    status, body, _ = await api.call(method, path, body=doc)
    assert status == 422, body
    assert len(json.dumps(body)) < 3 * SHOWN_INPUT_MAX + 200, body
    assert "\u2026" in body["error"] + body["field"]


async def test_track_ccnow_quotes_a_long_id_cut_short(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await call_cli("--config", cfg, "track", "ccnow", "9" * 100_000)
    assert result.code == 65
    assert "not a CCNow order id" in result.stderr and len(result.stderr) < 400


async def test_the_orders_of_an_account_no_longer_configured_can_be_read_and_untracked(
    api: Api,
) -> None:
    # `orders` and `untrack --account eu` reach them; the API said "no ccv account of that name".
    await api.rt.store.orders.track("ccv", "eu", [(ORDER, "shop-eu")], time.time())
    path = f"/api/v1/orders/ccv/{ORDER}?account=eu"
    status, body, _ = await api.call("GET", path)
    assert (status, body["account"], body["external_reference"]) == (200, "eu", "shop-eu")
    # Nothing asks CCV with the account's credentials: they are gone with it.
    status, body, _ = await api.call("GET", path + "&refresh=1")
    assert (status, body["field"]) == (422, "refresh")
    # Writes stay refused: a new order would be followed under a name nothing checks.
    track = {"source": "ccv", "order_id": "B-2", "account": "eu"}
    status, body, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert (status, body["field"]) == (422, "account")
    status, _, _ = await api.call("DELETE", path)
    assert status == 204
    assert api.rows("SELECT count(*) FROM orders WHERE account = 'eu'") == [(0,)]
    # An account that neither is configured nor has the order is still no account.
    status, body, _ = await api.call("GET", f"/api/v1/orders/ccv/{ORDER}?account=us")
    assert (status, body["field"]) == (422, "account")


async def test_a_submit_or_pricing_file_naming_a_key_twice_is_refused(tmp_path: Path) -> None:
    # Read as the last, as the API read a body: what CCV would get is not what was written.
    doc = tmp_path / "order.json"
    doc.write_text('{"order": {}, "order": {"x": 1}}')
    result = await call_cli("ccv", "check-pricing", str(doc))
    assert result.code == 65, result.stderr
    assert "the key 'order' is given twice in one object" in result.stderr
