"""A CCV submit whose cart carries prices has them checked as the pricing endpoint checks them
(refused before anything is recorded or sent, API 422 with every problem, `ccv submit` 65 with
one line each), and a pricing check never quotes a secret of the config back (API and
`ccv check-pricing` given the config). Before, the submit forwarded any cart, and the pricing
422 quoted the API key or a password given as a value in `found`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from reconciler.writes.submit_prices import REFUSED
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow
from tests.server.test_api import GOOD_PRICES, RECEIVER_SECRET, TOKEN, Api, api_toml, serve_api

# The pricing fields of GOOD_PRICES, as a cart carries them.
GOOD_CART = {k: v for k, v in GOOD_PRICES.items() if k != "order"}
# Every blocking rule broken at once (the outside probe's cart).
BAD_CART = {
    "currency": "USD",
    "shippingCost": 5,
    "oneOffPriceCouponCode": "",
    "oneOffPriceDiscount": 3,
    "totalAmountToBePaidImmediately": 999,
    "totalRevenueForFullYear": 0,
    "periodPricingDetails": [
        {
            "period": "OneOff",
            "excludingTax": 100,
            "singleExcludingTax": 100,
            "includingTax": 100,
            "taxAmountsPerTaxRate": [{"taxRate": 21, "taxAmount": 21}],
        }
    ],
}
NULL_CART: dict[str, Any] = {name: None for name in GOOD_CART} | {"salesPackages": []}
SECRETS = (CCV_KEY, CCNOW_PASSWORD, RECEIVER_SECRET, TOKEN)


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def cart_body(cart: dict[str, Any], ref: str) -> dict[str, Any]:
    return submit_body(externalReference=ref, order={"orderNotes": None, "shoppingCart": cart})


async def test_a_cart_breaking_the_pricing_rules_is_refused_before_it_is_recorded(
    api: Api, fake: FakeCCVWrites
) -> None:
    status, document, _ = await api.call(
        "POST", "/api/v1/ccv/orders", body=cart_body(BAD_CART, "px-1")
    )
    assert status == 422, document
    assert "nothing was recorded or sent to CCV" in document["error"]
    blocking = {p["path"] for p in document["problems"] if p["blocking"]}
    assert blocking == {
        "$.order.shoppingCart.currency",
        "$.order.shoppingCart.oneOffPriceCouponCode",
        "$.order.shoppingCart.periodPricingDetails[0].includingTax",
    }, document
    assert all(p["path"].startswith("$.order.shoppingCart") for p in document["problems"])
    assert fake.submits == []
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]


@pytest.mark.parametrize(
    ("cart", "ref"),
    [
        (NULL_CART, "px-null"),  # pricing set later by PATCH
        ({"salesPackages": []}, "px-absent"),
        (GOOD_CART, "px-good"),
        ({**GOOD_CART, "totalRevenueForFullYear": 999}, "px-warned"),  # a warning only
    ],
    ids=["null", "absent", "consistent", "warning-only"],
)
async def test_a_cart_without_prices_or_with_consistent_ones_is_sent(
    api: Api, fake: FakeCCVWrites, cart: dict[str, Any], ref: str
) -> None:
    status, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=cart_body(cart, ref))
    assert status == 201, document
    assert [s["order"]["shoppingCart"] for s in fake.submits] == [cart]


async def test_a_cart_with_prices_is_checked_whole_and_defaults_alone_are_no_prices(
    api: Api, fake: FakeCCVWrites
) -> None:
    # A configurator's defaults before any price is set: no prices to check; sent as given.
    defaults = {
        **NULL_CART,
        "currency": "EUR",
        "oneOffPriceCouponCode": "",
        "shippingCost": 0,
        "periodPricingDetails": [],
    }
    status, document, _ = await api.call(
        "POST", "/api/v1/ccv/orders", body=cart_body(defaults, "p0")
    )
    assert status == 201, document
    # Its periods' prices set, or its total: the cart is checked whole, its nulls included.
    periods = {**NULL_CART, "periodPricingDetails": GOOD_CART["periodPricingDetails"]}
    total = {**NULL_CART, "totalAmountToBePaidImmediately": 0}
    for n, cart in enumerate((periods, total)):
        status, document, _ = await api.call(
            "POST", "/api/v1/ccv/orders", body=cart_body(cart, f"p{n + 1}")
        )
        assert status == 422, document
        paths = {p["path"] for p in document["problems"] if p["blocking"]}
        assert "$.order.shoppingCart.currency" in paths, document
    assert [s["order"]["shoppingCart"] for s in fake.submits] == [defaults]


async def test_ccv_submit_refuses_such_a_cart_one_line_per_problem(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(cart_body(BAD_CART, "px-cli")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (65, ""), result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"reconciler: error: {REFUSED}"
    assert (
        "reconciler: error: $.order.shoppingCart.currency: currency must be EUR "
        '(expected "EUR", found "USD")'
    ) in lines
    assert len([line for line in lines if "$.order.shoppingCart" in line]) >= 3
    assert fake.submits == []
    db = tmp_path / "reconciler.db"
    assert not db.exists() or count(db, "submissions") == 0


# --- secrets never quoted -----------------------------------------------------------------------


def secret_prices() -> dict[str, Any]:
    period = GOOD_PRICES["periodPricingDetails"][0]  # type: ignore[index]
    taxes = [{"taxRate": TOKEN, "taxAmount": 21}]
    details = [{**period, "period": CCNOW_PASSWORD}, {**period, "taxAmountsPerTaxRate": taxes}]
    return {
        **GOOD_PRICES,
        "currency": CCV_KEY,
        "periodPricingDetails": details,
        "oneOffPriceCouponCode": RECEIVER_SECRET,
        "order": {"Currency": TOKEN},
    }


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text or s[:12] in text]


async def test_the_pricing_422_masks_every_secret_of_the_config(
    tmp_path: Path, fake: FakeCCVWrites, fake_ccnow: FakeCCNow
) -> None:
    async with serve_api(tmp_path, fake, ccnow=fake_ccnow) as api:
        status, document, _ = await api.call("PATCH", "/api/v1/ccv/pricing", body=secret_prices())
        assert status == 422, document
        text = json.dumps(document)
        assert leaked(text) == [], text
        found = {p["path"]: p["found"] for p in document["problems"]}
        assert found["$.currency"] == '"***"'
        assert "***" in found["$.periodPricingDetails[0].period"]
        # The same masking in a submit's cart.
        cart = {k: v for k, v in secret_prices().items() if k != "order"}
        status, document, _ = await api.call(
            "POST", "/api/v1/ccv/orders", body=cart_body(cart, "px-secret")
        )
        assert status == 422, document
        assert leaked(json.dumps(document)) == []
        assert fake.pricing_calls == [] and fake.submits == []


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
async def test_check_pricing_given_a_config_masks_its_secrets(
    tmp_path: Path, fake: FakeCCVWrites, fake_ccnow: FakeCCNow, as_json: bool
) -> None:
    cfg = write_config(
        tmp_path,
        ccv=fake,
        ccnow=fake_ccnow,
        extra=api_toml(free_port()),  # the receiver's secret and the API token
    )
    stdin = json.dumps(secret_prices()).encode()
    args: list[str | Path] = [
        "--config",
        cfg,
        "ccv",
        "check-pricing",
        *(["--json"] if as_json else []),
        "-",
    ]
    result = await call_cli(*args, stdin=stdin)
    assert result.code == 65, result.stderr
    assert leaked(result.stdout + result.stderr) == [], result.stdout
    assert "$.currency" in result.stdout and "***" in result.stdout
    # Without a config it knows no secret: the values are quoted as given. So with one it
    # cannot load (the check needs none): no 78, the check's own answer.
    missing = tmp_path / "none.toml"
    broken = tmp_path / "broken.toml"
    broken.write_text("[ccv\n")
    for other in (missing, broken):
        result = await call_cli("--config", other, "ccv", "check-pricing", "-", stdin=stdin)
        assert result.code == 65 and CCV_KEY in result.stdout, (other, result.stderr)
