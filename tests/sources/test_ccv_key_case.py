"""CCV status answers whose keys come in another letter case: read ignoring case, as CCV's
answer to a submit is (`OrderId`), and two keys naming one in different cases are two answers,
as the same key twice is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.sources.ccv import CCVClient
from reconciler.sources.errors import SourceUnavailable
from tests.conftest import call_cli, read_events, write_config
from tests.fake_providers import STAMPED, FakeCCV, Reply, ccv_config


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def key(order_id: str) -> OrderKey:
    return OrderKey("ccv", "default", order_id)


PROTOCOL = Observation(key("A1"), Outcome.FAILED, reason="protocol", asked=STAMPED)


async def answered(fake: FakeCCV, session: aiohttp.ClientSession, body: bytes | str) -> Observation:
    fake.replies["A1"] = Reply(200, body, "application/json")
    return await CCVClient(ccv_config(fake.base_url), session, secrets=()).fetch("A1")


# --- another case alone is the same key ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "reference"),
    [
        ('{"OrderStatus": "Completed"}', "Completed", None),
        ('{"OrderStatus": "Completed", "ExternalReference": "shop-7"}', "Completed", "shop-7"),
        ('{"ORDERSTATUS": "Failed", "externalreference": "shop-7"}', "Failed", "shop-7"),
        ('{"Order\\u0053tatus": "Canceled", "o": {"k": 1}}', "Canceled", None),
        ('{"OrderStatus": "New", "Note": "\\u00e9"}', "New", None),
    ],
    ids=["pascal-status", "pascal-both", "upper-and-lower", "pascal-escaped", "pascal-non-ascii"],
)
async def test_a_key_in_another_case_is_read(
    fake_ccv: FakeCCV,
    session: aiohttp.ClientSession,
    body: str,
    status: str,
    reference: str | None,
) -> None:
    # Before, no `orderStatus` was found: every check failed as `protocol`, while a submit's
    # answer naming `OrderId` was read.
    assert await answered(fake_ccv, session, body) == Observation(
        key("A1"), Outcome.OK, status, reference, asked=STAMPED
    )


async def test_a_pascal_case_answer_proves_the_account_to_the_probe(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession
) -> None:
    fake_ccv.always = Reply(200, '{"OrderStatus": "Completed"}', "application/json")
    await CCVClient(ccv_config(fake_ccv.base_url), session, secrets=()).probe()  # no raise


async def test_a_pascal_case_key_named_twice_is_still_two_answers(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession
) -> None:
    assert await answered(fake_ccv, session, '{"OrderStatus": "New"}') == Observation(
        key("A1"), Outcome.OK, "New", asked=STAMPED
    )
    twice = '{"OrderStatus": "New", "OrderStatus": "Completed"}'
    assert await answered(fake_ccv, session, twice) == PROTOCOL


async def test_a_pascal_case_answer_is_followed_end_to_end(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    body = '{"OrderStatus": "Completed", "ExternalReference": "shop-7"}'
    fake_ccv.replies["o1"] = Reply(200, body, "application/json")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", "o1")).code == 0
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    [event] = [e for e in read_events(tmp_path) if e.get("subject") == "o1"]
    assert event["type"] == "order.discovered"
    assert (event["data"]["status"], event["data"]["external_reference"]) == ("Completed", "shop-7")


# --- two keys naming one, in different cases ----------------------------------------------------

TWINS = {
    "status-camel-first": '{"orderStatus": "New", "OrderStatus": "Failed"}',
    "status-pascal-first": '{"OrderStatus": "Failed", "orderStatus": "New"}',
    "status-same-word": '{"orderStatus": "New", "OrderStatus": "New"}',
    "status-upper": '{"orderStatus": "New", "ORDERSTATUS": "Completed"}',
    "status-escaped": '{"orderStatus": "New", "Order\\u0053tatus": "Completed"}',
    "status-long-s": '{"orderStatus": "New", "order\u017ftatus": "Completed"}',
    "status-after-nested": '{"o": {"k": 1}, "orderStatus": "New", "OrderStatus": "Closed"}',
    "reference-camel-first": (
        '{"orderStatus": "New", "externalReference": "A", "ExternalReference": "B"}'
    ),
    "reference-pascal-first": (
        '{"ExternalReference": "B", "orderStatus": "New", "externalReference": "A"}'
    ),
}


@pytest.mark.parametrize("body", TWINS)
async def test_two_keys_differing_only_in_case_fail_that_order(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession, body: str
) -> None:
    # Before, the camelCase key was taken and its twin ignored: `Failed` or `Completed` lost,
    # or another reference dropped without `order.external_reference_differs`.
    assert await answered(fake_ccv, session, TWINS[body]) == PROTOCOL


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-be"])
async def test_two_keys_differing_only_in_case_in_utf16_or_utf32_fail_that_order(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession, encoding: str
) -> None:
    body = TWINS["status-camel-first"].encode(encoding)
    assert await answered(fake_ccv, session, body) == PROTOCOL


async def test_two_keys_differing_only_in_case_prove_nothing_to_the_probe(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession
) -> None:
    fake_ccv.always = Reply(200, TWINS["status-camel-first"], "application/json")
    with pytest.raises(SourceUnavailable, match="protocol"):
        await CCVClient(ccv_config(fake_ccv.base_url), session, secrets=()).probe()


@pytest.mark.parametrize("body", ["status-camel-first", "status-pascal-first"])
async def test_no_event_comes_of_an_answer_naming_its_status_in_two_cases(
    tmp_path: Path, fake_ccv: FakeCCV, body: str
) -> None:
    fake_ccv.replies["o1"] = Reply(200, TWINS[body], "application/json")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", "o1")).code == 0
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 75, result.stderr  # the order's check failed: to be asked again
    assert [e["type"] for e in read_events(tmp_path) if e.get("subject") == "o1"] == []
    assert "protocol" in result.stderr, result.stderr
    orders = await call_cli("--config", cfg, "orders", "--json")
    assert '"Failed"' not in orders.stdout and '"New"' not in orders.stdout
