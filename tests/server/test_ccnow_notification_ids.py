"""Which CCNow order ids a server notification names. CCNow documents no layout for its post
(a hint to poll, never the truth), so an id counts only when it stands alone, and an order
nobody follows yet is followed from a notification only when its id stands in a field named for
an order, or is the whole body; an id found elsewhere (an amount, a note) is queried only when
its order is followed already."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from reconciler.config import Secret, load_config
from reconciler.delivery import Delivery
from reconciler.logs import log_handler
from reconciler.metrics import Metrics
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.server import MAX_HINTS, build_app, read_ccnow_hints
from reconciler.server.hub import Hub
from reconciler.sinks import build_sinks, sink_names
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow
from tests.server.conftest import (
    CCNOW_TOKEN,
    RECEIVER,
    Client,
    FakeHub,
    send,
    served,
    settled,
)

PATH = f"/notify/ccnow/default/{CCNOW_TOKEN}"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}


@pytest.mark.parametrize(
    ("body", "headers", "named", "mentioned"),
    [
        # The probe's post: only the order field's id may start following an order.
        (
            b"order_number=710000002&amount=100000000&x=710-00-0003-9",
            FORM,
            ["710-00-0002"],
            ["100-00-0000"],
        ),
        (
            b"x_orderid=710-00-0002&OrderNo=710000003&orderid=710000004&x_amount=710000005",
            FORM,
            ["710-00-0002", "710-00-0003", "710-00-0004"],
            ["710-00-0005"],
        ),
        # Decoded as a form: `%2D` is a hyphen, `+` a space.
        (
            b"order_number=396%2D10%2D1144&note=shipped+396-10-1145",
            FORM,
            ["396-10-1144"],
            ["396-10-1145"],
        ),
        # Not alone: a letter, digit, hyphen or underscore next to the digits.
        (
            b"order=x710000002&order_a=7100000021&order_b=710-00-0003-9&order_c=_710000004"
            b"&order_d=710000005a&order_e=-710000006",
            FORM,
            [],
            [],
        ),
        # Several ids in an order field, each alone.
        (
            b"orders=710000002,710-00-0003 710000004",
            FORM,
            ["710-00-0002", "710-00-0003", "710-00-0004"],
            [],
        ),
        # Fields on lines of their own, or after a blank: each its own field (the rest was
        # read as the first field's value, an amount as an order's id).
        (b"x_orderid=710000002\nx_amount=100000000", FORM, ["710-00-0002"], ["100-00-0000"]),
        (b"x_amount=100000000\r\nx_orderid=710000002", FORM, ["710-00-0002"], ["100-00-0000"]),
        (b"order=710000002 amount=100000000", FORM, ["710-00-0002"], ["100-00-0000"]),
        # Named for another figure of the order, or not for an order at all.
        (
            b"x_order_total=100000000&order_date=710000002&border=710000003&reorder=710000004",
            FORM,
            [],
            ["100-00-0000", "710-00-0002", "710-00-0003", "710-00-0004"],
        ),
        # An id named and mentioned is named once.
        (b"note=710000002&order_id=710000002", FORM, ["710-00-0002"], []),
        # A plain body of an id, or of id lines, is the whole value: named.
        (b"710000002", TEXT, ["710-00-0002"], []),
        (b"  710-00-0002\r\n\r\n710000003 \n", TEXT, ["710-00-0002", "710-00-0003"], []),
        (b"\xef\xbb\xbf710000002\n", TEXT, ["710-00-0002"], []),
        # Free text, even with one id alone on a line: mentioned only.
        (b"order 710000002 paid\n710000003\n", TEXT, [], ["710-00-0002", "710-00-0003"]),
        (b"\xff\xfe\x00396-10-1142\x00\x80junk", TEXT, [], ["396-10-1142"]),
        (b"{not json, phone 0123456789012, 12-34-5678", JSON, [], []),
        (b"", {}, [], []),
    ],
    ids=[
        "probe-form",
        "order-field-names",
        "form-encoded",
        "not-alone",
        "several-in-one-field",
        "fields-on-lines",
        "fields-on-crlf-lines",
        "fields-after-a-blank",
        "other-figures",
        "named-wins",
        "bare-id",
        "id-lines",
        "bom",
        "free-text",
        "junk-bytes",
        "broken-json",
        "empty",
    ],
)
async def test_an_id_may_start_following_only_in_an_order_field_or_as_the_whole_body(
    client: Client,
    hub: FakeHub,
    body: bytes,
    headers: dict[str, str],
    named: list[str],
    mentioned: list[str],
) -> None:
    status, _, _ = await send(client, "POST", PATH, data=body, headers=headers)
    assert status == 202
    await hub.wait_calls(1)
    assert hub.calls[0][:3] == ("ccnow", "default", named)
    assert hub.calls[0][4] == mentioned


async def test_an_id_a_burst_names_once_is_named_in_the_trailing_poll(
    client: Client, hub: FakeHub
) -> None:
    hub.gate = asyncio.Event()
    assert (await send(client, "POST", PATH, data=b"first=1", headers=FORM))[0] == 202
    await hub.wait_calls(1)
    for body in (b"note=710000002&x=710000003", b"order_id=710000002", b"amount=710000003"):
        assert (await send(client, "POST", PATH, data=body, headers=FORM))[0] == 202
    hub.gate.set()
    await hub.wait_calls(2)
    await settled(client)
    assert hub.calls[1][2:5:2] == (["710-00-0002"], ["710-00-0003"])


@pytest.mark.parametrize(
    ("document", "named", "mentioned"),
    [
        ({"order_id": "710000002", "amount": 100000000}, ["710-00-0002"], ["100-00-0000"]),
        ({"OrderNumber": 710000002}, ["710-00-0002"], []),
        # A list takes the name of the key that holds it.
        ({"order_ids": ["710000002", 710000003]}, ["710-00-0002", "710-00-0003"], []),
        # Nested: the key that holds the value names it, or an id key of an object an
        # order's key holds; an amount under `order` stays an amount.
        (
            {"order": {"id": "710000002", "amount": "100000000"}},
            ["710-00-0002"],
            ["100-00-0000"],
        ),
        (
            {"orders": [{"id": 710000002, "total": 100000000}], "id": "710000003"},
            ["710-00-0002"],
            ["100-00-0000", "710-00-0003"],
        ),
        # Named for another of the order's figures: no id.
        (
            {"order_total": "100000000", "orderDate": "710000002"},
            [],
            ["100-00-0000", "710-00-0002"],
        ),
        (
            {"data": {"order": {"order_no": "710000002"}}, "x": [{"orders": ["710000003"]}]},
            ["710-00-0002", "710-00-0003"],
            [],
        ),
        # A top-level array has no key; an id as a key names no order.
        (["710000002"], [], ["710-00-0002"]),
        ({"710000002": "pending"}, [], ["710-00-0002"]),
        # Duplicate keys: every value is read, not only the last.
        ('{"order_id": "710000002", "order_id": "710000003"}', ["710-00-0002", "710-00-0003"], []),
    ],
    ids=[
        "flat",
        "number",
        "list",
        "nested-id",
        "orders-list-of-objects",
        "other-order-figures",
        "nested-order-key",
        "array",
        "id-as-key",
        "duplicate-keys",
    ],
)
def test_a_json_body_names_by_the_key_that_holds_the_value(
    document: object, named: list[str], mentioned: list[str]
) -> None:
    text = document if isinstance(document, str) else json.dumps(document)
    hints = read_ccnow_hints(text.encode())
    assert (hints.named, hints.mentioned) == (named, mentioned)


def test_a_json_body_nested_too_deep_for_the_parser_is_read_as_text() -> None:
    body = b"[" * 100_000 + b'"710000002"' + b"]" * 100_000
    hints = read_ccnow_hints(body)
    assert (hints.named, hints.mentioned) == ([], ["710-00-0002"])


def test_hints_are_bounded_named_first() -> None:
    mentioned = "&".join(f"note{n}=396-10-{n:04d}" for n in range(MAX_HINTS))
    named = "&".join(f"order{n}=397-10-{n:04d}" for n in range(10))
    hints = read_ccnow_hints(f"{mentioned}&{named}".encode())
    assert hints.named == [f"397-10-{n:04d}" for n in range(10)]
    assert len(hints.named) + len(hints.mentioned) == MAX_HINTS
    lines = "\n".join(f"396-10-{n:04d}" for n in range(MAX_HINTS + 5))
    assert len(read_ccnow_hints(lines.encode()).named) == MAX_HINTS


# --- through the receiver, the hub and the coordinator, to a CCNow fake ------------------------


@pytest.fixture
async def daemon_client(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Client, Hub]]:
    """The receiver on 127.0.0.1 over the daemon's hub, its CCNow account on the fake."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    store = await Store.open(config.store_path, sinks=sink_names(config))
    try:
        async with aiohttp.ClientSession() as session:
            delivery = Delivery(store, build_sinks(config, session, log_handler()))
            coordinators = Coordinators.build(config, Reconciler(config, store), session, Gates())
            hub = Hub(config, coordinators, store, delivery, Metrics())
            app = build_app(
                RECEIVER,
                hub,
                ccv_accounts=[],
                ccnow_tokens={"default": Secret(CCNOW_TOKEN)},
                metrics=Metrics(),
            )
            async with TestClient(served(app)) as test_client:
                yield test_client, hub
            await delivery.close()
    finally:
        await store.close()


def queried(fake: FakeCCNow) -> list[str]:
    """Every order id a post to the fake named, in order."""
    return [v for r in fake.requests for k, v in r.form.items() if k.startswith("x_orderid_")]


async def test_an_amount_or_an_id_with_a_suffix_starts_following_no_order(
    daemon_client: tuple[Client, Hub], fake_ccnow: FakeCCNow
) -> None:
    client, hub = daemon_client
    store = hub.store
    fake_ccnow.orders = {
        "710-00-0002": "processing",
        "100-00-0000": "test",
        "710-00-0003": "processing",
        "720-00-0001": "processing",  # followed already, mentioned in a note: asked
        "720-00-0002": "canceled",  # followed but ended: not asked
        "720-00-0003": "processing",  # not followed, mentioned: not asked
    }
    followed = [("720-00-0001", None), ("720-00-0002", None)]
    await store.orders.track("ccnow", "default", followed, 1.0)
    await hub.coordinators.ccnow["default"].check(["720-00-0001", "720-00-0002"], via="poll")
    fake_ccnow.orders["720-00-0001"] = "mark_shipped"
    asked_before = len(queried(fake_ccnow))
    body = (
        b"order_number=710000002&amount=100000000&x=710-00-0003-9"
        b"&note=see+720000001+720000002+720-00-0003"
    )
    status, _, _ = await send(client, "POST", PATH, data=body, headers=FORM)
    assert status == 202
    await settled(client)

    assert sorted(queried(fake_ccnow)[asked_before:]) == ["710-00-0002", "720-00-0001"]
    events = [
        (e.type, e.order_id, json.loads(e.body)["data"]["via"])
        for e in await store.events.history()
    ]
    assert events[-2:] == [
        ("order.discovered", "710-00-0002", "notification"),
        ("order.status_changed", "720-00-0001", "notification"),
    ] or events[-2:] == [
        ("order.status_changed", "720-00-0001", "notification"),
        ("order.discovered", "710-00-0002", "notification"),
    ]
    assert {order_id for _, order_id, _ in events}.isdisjoint(
        {"100-00-0000", "710-00-0003", "720-00-0003"}
    )
    rows = {s.key.order_id: s.status for s in await store.orders.snapshot("ccnow")}
    assert rows == {
        "710-00-0002": "processing",
        "720-00-0001": "mark_shipped",
        "720-00-0002": "canceled",
    }


async def test_the_mentioned_ids_not_followed_are_counted_in_a_log_line(
    daemon_client: tuple[Client, Hub], fake_ccnow: FakeCCNow, caplog: pytest.LogCaptureFixture
) -> None:
    client, hub = daemon_client
    fake_ccnow.orders = {"720-00-0001": "processing", "720-00-0002": "canceled"}
    followed = [("720-00-0001", None), ("720-00-0002", None)]
    await hub.store.orders.track("ccnow", "default", followed, 1.0)
    await hub.coordinators.ccnow["default"].check(["720-00-0001", "720-00-0002"], via="poll")
    # 720-00-0001 followed: asked. 720-00-0002 ended, 720-00-0003 and the amount's digits
    # nobody follows: dropped, and (was) counted nowhere.
    body = b"amount=100000000&note=see+720000001+720000002+720-00-0003"
    with caplog.at_level(logging.INFO, logger="reconciler.poller"):
        status, _, _ = await send(client, "POST", PATH, data=body, headers=FORM)
        assert status == 202
        await settled(client)
    (record,) = [r for r in caplog.records if r.msg == "notification.not_followed"]
    said = vars(record)["fields"]
    assert {k: said[k] for k in ("source", "account", "mentioned")} == {
        "source": "ccnow",
        "account": "default",
        "mentioned": 3,
    }
    assert not any("720" in str(value) for value in said.values())  # counted, not named
