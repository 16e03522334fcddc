"""Which account an integration API request is for, over real HTTP: a source with no account
configured, or with several and the request naming none, is a 422 naming the field to fix."""

from __future__ import annotations

import re
from pathlib import Path

from tests.fake_ccv_writes import FakeCCVWrites
from tests.fake_providers import CCV_KEY, FakeCCNow
from tests.server.test_api import ORDER, serve_api


def without_ccv(text: str) -> str:
    """The config with its CCV account's table taken out (write_config's parts end blank)."""
    return re.sub(r"^\[ccv\]\n.*?\n\n", "", text, count=1, flags=re.M | re.S)


async def test_a_ccv_request_where_no_ccv_account_is_configured_names_the_source(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    async with (
        FakeCCVWrites() as fake,
        serve_api(tmp_path, fake, ccnow=fake_ccnow, edit_config=without_ccv) as api,
    ):
        assert not api.rt.config.ccv and api.rt.config.ccnow
        refused = {"error": "no ccv account is configured", "field": "source"}
        track = {"source": "ccv", "order_id": ORDER}
        assert (await api.call("POST", "/api/v1/orders", body=track))[:2] == (422, refused)
        read = f"/api/v1/orders/ccv/{ORDER}"
        assert (await api.call("GET", read))[:2] == (422, refused)
        assert api.rows("SELECT count(*) FROM orders") == [(0,)]


async def test_a_request_naming_no_account_of_several_asks_for_one(tmp_path: Path) -> None:
    def two_accounts(text: str) -> str:
        named = text.replace("[ccv]\n", '[[ccv]]\nname = "shop-nl"\n', 1)
        second = f'[[ccv]]\nname = "shop-be"\nbase_url = "{fake.base_url}"\napi_key = "{CCV_KEY}"\n'
        return f"{named}\n{second}"

    async with FakeCCVWrites() as fake, serve_api(tmp_path, fake, edit_config=two_accounts) as api:
        assert [c.name for c in api.rt.config.ccv] == ["shop-nl", "shop-be"]
        refused = {"error": "several ccv accounts: name one", "field": "account"}
        track = {"source": "ccv", "order_id": ORDER}
        assert (await api.call("POST", "/api/v1/orders", body=track))[:2] == (422, refused)
        assert (await api.call("GET", f"/api/v1/orders/ccv/{ORDER}"))[:2] == (422, refused)
        assert api.rows("SELECT count(*) FROM orders") == [(0,)]
        # Named, the request is taken.
        status, body, _ = await api.call(
            "POST", "/api/v1/orders", body={**track, "account": "shop-be"}
        )
        assert (status, body["account"]) == (201, "shop-be"), body
