"""CCV refusing the account's API key to prices forwarded (its 401 or 403) is told as CCV's
refusal of reconciler's key, never as the API refusing the caller's token: a `502` whose body
says so and names CCV's status in `ccv_status`, without `WWW-Authenticate` and without CCV's
body (which may quote the key). Before, CCV's 401 came back as a 401 of the API's own, which a
client reads as its bearer token refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.fake_ccv_writes import FakeCCVWrites
from tests.fake_providers import CCV_KEY, Reply
from tests.server.test_api import serve_api
from tests.server.test_api_pricing_trail import PRICES, trail


def refused_said(status: int) -> dict[str, object]:
    """The API's answer to prices whose forwarding CCV refused with `status`."""
    return {
        "error": (
            f'CCV refused the API key of CCV account "default" (CCV answered HTTP {status}): '
            "the prices were not set; the account's api_key in reconciler's config needs "
            "fixing (this request's token was accepted)"
        ),
        "ccv_status": status,
        "account": "default",
    }


def assert_told_as_ccvs(
    status: int, document: object, headers: object, caplog: pytest.LogCaptureFixture, ccv: int
) -> None:
    """The answer and its log line for CCV's refusal of the key with `ccv`."""
    assert (status, document) == (502, refused_said(ccv))
    assert "WWW-Authenticate" not in headers  # type: ignore[operator]
    assert headers["Reconciler-Pricing-Warnings"] == "1"  # type: ignore[index]
    assert CCV_KEY not in json.dumps(document)
    assert trail(caplog) == [
        {
            "account": "default",
            "warnings": 1,
            "status": ccv,
            "reason": "api_key_refused",
            "level": "WARNING",
        }
    ]


async def test_a_key_ccv_does_not_know_is_no_401_of_the_apis(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # CCV knows another key than the account's: it answers 401 to the account's.
    async with FakeCCVWrites(api_key="t_another-key") as fake, serve_api(tmp_path, fake) as api:
        status, document, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=PRICES)
    assert_told_as_ccvs(status, document, headers, caplog, 401)


@pytest.mark.parametrize("ccv", [401, 403])
async def test_ccvs_refusal_of_the_key_keeps_none_of_its_words_or_challenge(
    api: object, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture, ccv: int
) -> None:
    caplog.set_level(logging.DEBUG)
    # CCV's challenge and a body quoting the key it was given: neither comes back.
    fake.pricing_replies = [
        Reply(
            ccv,
            json.dumps({"message": f"API key {CCV_KEY} refused"}),
            "application/json",
            headers={"WWW-Authenticate": 'Basic realm="ccv"'},
        )
    ]
    status, document, headers = await api.call(  # type: ignore[attr-defined]
        "PATCH", "/api/v1/ccv/pricing", body=PRICES
    )
    assert_told_as_ccvs(status, document, headers, caplog, ccv)
    assert len(fake.pricing_calls) == 1  # sent once, never again
