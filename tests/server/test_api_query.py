"""What the API reads of a request's URL: `?account=` on every endpoint that takes an account
(a write named an unknown account in its URL and went through `default`), and no query
parameter it does not know (`?afer=5` read the feed from its start: a consumer's typo
duplicated events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_ccv_writes import FakeCCVWrites
from tests.fake_providers import FakeCCNow
from tests.server.test_api import ORDER, Api, serve_api

CCNOW_ORDER = "396-10-1142"


@pytest.fixture
async def both(tmp_path: Path, fake: FakeCCVWrites, fake_ccnow: FakeCCNow) -> AsyncIterator[Api]:
    async with serve_api(tmp_path, fake, ccnow=fake_ccnow) as api:
        yield api


WRITES = [
    ("/api/v1/orders", {"source": "ccnow", "order_id": CCNOW_ORDER}),
    ("/api/v1/orders", {"source": "ccv", "order_id": ORDER}),
    ("/api/v1/ccnow/actions", {"order_id": CCNOW_ORDER, "action": "ship"}),
    ("/api/v1/ccnow/actions/resolve", {"order_id": CCNOW_ORDER, "sent": False}),
    ("/api/v1/ccv/submissions/resolve", {"external_reference": "shop-1", "sent": False}),
]


@pytest.mark.parametrize(("path", "body"), WRITES)
async def test_an_unknown_account_in_the_url_is_refused_as_in_the_body(
    both: Api, fake_ccnow: FakeCCNow, path: str, body: dict[str, object]
) -> None:
    status, document, _ = await both.call("POST", path + "?account=zzz", body=body)
    assert (status, document["field"]) == (422, "account"), document
    assert "account of that name" in document["error"]
    assert both.rows("SELECT count(*) FROM orders") == [(0,)]
    assert both.rows("SELECT count(*) FROM commands") == [(0,)]
    assert fake_ccnow.actions == []


@pytest.mark.parametrize(("path", "body"), WRITES)
async def test_a_body_account_and_a_url_account_that_differ_are_refused_naming_both(
    both: Api, path: str, body: dict[str, object]
) -> None:
    status, document, _ = await both.call(
        "POST", path + "?account=default", body={**body, "account": "other"}
    )
    assert (status, document["field"]) == (422, "account"), document
    assert "'other'" in document["error"] and "'default'" in document["error"]
    assert both.rows("SELECT count(*) FROM orders") == [(0,)]


async def test_the_account_in_the_url_is_the_one_used(both: Api) -> None:
    body = {"source": "ccnow", "order_id": CCNOW_ORDER}
    status, document, _ = await both.call("POST", "/api/v1/orders?account=default", body=body)
    assert (status, document["account"]) == (201, "default"), document
    # Named the same in both: one account.
    again = {**body, "account": "default"}
    status, document, _ = await both.call("POST", "/api/v1/orders?account=default", body=again)
    assert (status, document["account"]) == (200, "default"), document
    # `"account": null` names none: the URL's decides.
    status, document, _ = await both.call(
        "POST", "/api/v1/orders?account=zzz", body={**body, "account": None}
    )
    assert (status, document["field"]) == (422, "account"), document


UNKNOWN = [
    ("GET", "/api/v1/events?afer=5&limit=5", None, "afer"),
    ("GET", "/api/v1/events?after=0&limt=5", None, "limt"),
    ("GET", f"/api/v1/orders/ccv/{ORDER}?refrsh=1", None, "refrsh"),
    ("DELETE", f"/api/v1/orders/ccv/{ORDER}?acount=x", None, "acount"),
    ("POST", "/api/v1/orders?acount=x", {"source": "ccv", "order_id": ORDER}, "acount"),
    ("POST", "/api/v1/ccv/orders?dry_run=1", {"notifyCustomerByEmail": True}, "dry_run"),
    ("PATCH", "/api/v1/ccv/pricing?x=1", {}, "x"),
    ("GET", "/api/v1/ccv/submissions/shop-1?ref=1", None, "ref"),
    ("POST", "/api/v1/ccv/submissions/resolve?sent=false", {}, "sent"),
    ("POST", "/api/v1/ccnow/actions?action=ship", {}, "action"),
    ("POST", "/api/v1/ccnow/actions/resolve?sent=1", {}, "sent"),
    ("GET", "/api/v1/ccnow/actions/1?account=default", None, "account"),
    ("GET", "/api/v1/events?account=default", None, "account"),
]


@pytest.mark.parametrize(("method", "path", "body", "name"), UNKNOWN)
async def test_an_unknown_query_parameter_is_refused_before_anything_is_done(
    both: Api,
    fake: FakeCCVWrites,
    fake_ccnow: FakeCCNow,
    method: str,
    path: str,
    body: object,
    name: str,
) -> None:
    both.rows("INSERT INTO orders (source, account, order_id) VALUES ('ccv', 'default', ?)", ORDER)
    status, document, _ = await both.call(method, path, body=body)
    assert (status, document) == (400, {"error": f"unknown query parameter: {name}"})
    assert both.rows("SELECT order_id FROM orders") == [(ORDER,)]
    assert fake.submits == [] and fake.pricing_calls == [] and fake_ccnow.actions == []


async def test_the_known_query_parameters_are_still_taken(both: Api) -> None:
    status, document, _ = await both.call(
        "GET", "/api/v1/events?after=0&limit=5&type=order.status_changed"
    )
    assert (status, document["events"]) == (200, []), document
    status, _, _ = await both.call("GET", f"/api/v1/orders/ccv/{ORDER}?account=default&refresh=0")
    assert status == 404
