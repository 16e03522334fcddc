"""The notification receiver, /healthz and /metrics, served for real on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from reconciler.config import Secret
from reconciler.json_text import iso_time
from reconciler.metrics import Metrics
from reconciler.notify import signature
from reconciler.server import (
    DEBOUNCER,
    MAX_HINTS,
    Debouncer,
    Health,
    Receiver,
    SourceHealth,
    build_app,
    extract_ccnow_ids,
    parse_notify_path,
)
from reconciler.server.connections import ConnectionLimits, connection_cap
from reconciler.store import StoreError
from tests.conftest import Clock, awaiting, poll_until
from tests.server.conftest import (
    CCNOW_TOKEN,
    RECEIVER,
    RECEIVER_SECRET,
    Client,
    FakeHub,
    ccv_path,
    send,
    settled,
)

# --- CCV ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/reconciler", "/a/b/c"])
async def test_valid_ccv_order_url_is_accepted_and_checked_once(
    client: Client, hub: FakeHub, prefix: str
) -> None:
    path = prefix + ccv_path(order_id="O-1001").removeprefix("/reconciler")
    before = time.monotonic()
    status, data, _ = await send(client, "POST", path)
    assert (status, data) == (202, {"accepted": True})
    await hub.wait_calls(1)
    await settled(client)
    kind, account, order_id, received_at = hub.calls[0]
    assert (kind, account, order_id) == ("order", "default", "O-1001")
    assert before <= received_at <= time.monotonic()
    assert len(hub.calls) == 1


async def test_reference_is_percent_decoded_exactly_once(client: Client, hub: FakeHub) -> None:
    reference = "inv/2026 ä%41?#"
    status, _, _ = await send(client, "POST", ccv_path(reference=reference))
    assert status == 202
    await hub.wait_calls(1)
    assert hub.calls[0][:3] == ("ref", "default", reference)


async def test_query_string_and_body_are_ignored_for_ccv(client: Client, hub: FakeHub) -> None:
    status, _, _ = await send(
        client, "POST", ccv_path(order_id="O-7") + "?x=1", data=b'{"orderId": "O-8"}'
    )
    assert status == 202
    await hub.wait_calls(1)
    assert hub.calls[0][:3] == ("order", "default", "O-7")


def _tampered() -> list[tuple[str, str]]:
    good = ccv_path(order_id="O-1001")
    head, sig = good.rsplit("/", 1)
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    wrong_secret = signature("some-other-secret-0123456789", "default", "order", "O-1001")
    return [
        ("flipped signature character", f"{head}/{flipped}"),
        ("truncated signature", f"{head}/{sig[:-1]}"),
        ("signature of another secret", f"{head}/{wrong_secret}"),
        ("non-ASCII signature", f"{head}/{quote('ä' * 22)}"),
        ("empty signature", f"{head}/"),
        ("other order id", good.replace("O-1001", "O-1002")),
        ("order id encoded twice", good.replace("O-1001", quote(quote("O-1 x", safe=""), safe=""))),
        ("other known account", good.replace("/default/", "/second/")),
        ("unknown account", good.replace("/default/", "/nobody/")),
        ("kind swapped", good.replace("/order/", "/ref/")),
        ("unknown kind", good.replace("/order/", "/orders/")),
        ("missing segment", good.replace("/order/", "/")),
        ("trailing slash", good + "/"),
        ("source swapped", good.replace("/ccv/", "/ccnow/")),
    ]


@pytest.mark.parametrize(("case", "path"), _tampered(), ids=[case for case, _ in _tampered()])
async def test_tampered_url_gets_404_and_no_provider_call(
    client: Client, hub: FakeHub, metrics: Metrics, case: str, path: str
) -> None:
    status, data, _ = await send(client, "POST", path)
    assert status == 404, case
    assert data == {"error": "not found"}
    await settled(client)
    assert hub.calls == []


async def test_forbidden_order_id_is_refused_even_when_signed(client: Client, hub: FakeHub) -> None:
    # notify.notification_url does not validate; the receiver must not pass `..` on.
    status, _, _ = await send(client, "POST", ccv_path(order_id=".."))
    assert status == 404
    await settled(client)
    assert hub.calls == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_other_methods_on_a_notify_path_get_405(
    client: Client, hub: FakeHub, method: str
) -> None:
    status, _, response = await send(client, method, ccv_path(order_id="O-1"))
    assert status == 405
    assert response.headers["Allow"] == "POST"
    await settled(client)
    assert hub.calls == []


@pytest.mark.parametrize("path", ["/", "/notify", "/notify/ccv", "/favicon.ico", "/healthz/x"])
async def test_unknown_paths_get_404(client: Client, path: str) -> None:
    status, data, _ = await send(client, "GET", path)
    assert (status, data) == (404, {"error": "not found"})


# --- body limit -------------------------------------------------------------------------------


async def test_body_over_64_kib_gets_413_and_no_call(client: Client, hub: FakeHub) -> None:
    path = ccv_path(order_id="O-1")
    status, data, _ = await send(client, "POST", path, data=b"x" * (64 * 1024 + 1))
    assert (status, data) == (413, {"error": "body too large"})

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(65):  # no Content-Length: the limit must hold while reading
            yield b"y" * 1024

    status, _, _ = await send(client, "POST", path, data=chunks())
    assert status == 413
    await settled(client)
    assert hub.calls == []


async def test_body_of_exactly_the_limit_is_accepted(client: Client, hub: FakeHub) -> None:
    token_path = f"/notify/ccnow/default/{CCNOW_TOKEN}"
    body = b"396-10-1142 " + b"z" * (64 * 1024 - 12)
    status, _, _ = await send(client, "POST", token_path, data=body)
    assert status == 202
    await hub.wait_calls(1)
    # Not the whole body, so not named: queried only if its order is followed.
    assert hub.calls[0][2:5:2] == ([], ["396-10-1142"])


async def test_compressed_body_is_limited_after_inflating(client: Client, hub: FakeHub) -> None:
    bomb = gzip.compress(b"0" * (1024 * 1024))
    assert len(bomb) < 64 * 1024
    status, _, _ = await send(
        client,
        "POST",
        f"/notify/ccnow/default/{CCNOW_TOKEN}",
        data=bomb,
        headers={"Content-Encoding": "gzip"},
    )
    assert status == 413
    await settled(client)
    assert hub.calls == []


async def test_broken_compressed_body_gets_400(client: Client, hub: FakeHub) -> None:
    status, _, _ = await send(
        client,
        "POST",
        ccv_path(order_id="O-1"),
        data=b"not gzip at all",
        headers={"Content-Encoding": "gzip"},
    )
    assert status == 400
    await settled(client)
    assert hub.calls == []


# --- CCNow ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/reconciler"])
async def test_ccnow_right_token_polls_the_account(
    client: Client, hub: FakeHub, prefix: str
) -> None:
    status, data, _ = await send(client, "POST", f"{prefix}/notify/ccnow/default/{CCNOW_TOKEN}")
    assert (status, data) == (202, {"accepted": True})
    await hub.wait_calls(1)
    assert hub.calls[0][:3] == ("ccnow", "default", [])


@pytest.mark.parametrize(
    "path",
    [
        f"/notify/ccnow/default/{CCNOW_TOKEN[:-1]}",
        f"/notify/ccnow/default/{CCNOW_TOKEN}x",
        f"/notify/ccnow/default/{CCNOW_TOKEN.upper()}",
        "/notify/ccnow/default/",
        f"/notify/ccnow/second/{CCNOW_TOKEN}",  # account without a token
        f"/notify/ccnow/nobody/{CCNOW_TOKEN}",
        f"/notify/ccnow/default/{CCNOW_TOKEN}/extra",
        f"/notify/ccnow/default/{quote('é' * 20)}",
        "/notify/ccnow/default/%ff%fe",
    ],
)
async def test_ccnow_wrong_token_gets_404_and_no_poll(
    client: Client, hub: FakeHub, path: str
) -> None:
    status, _, _ = await send(client, "POST", path, data=b"order_number=396-10-1142")
    assert status == 404
    await settled(client)
    assert hub.calls == []


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (
            b"order_number=396-10-1142&other=396101143&total=12.00",
            {"Content-Type": "application/x-www-form-urlencoded"},
            ["396-10-1142", "396-10-1143"],
        ),
        (
            b"order_number=396%2D10%2D1144&note=shipped+396-10-1145",
            {"Content-Type": "application/x-www-form-urlencoded"},
            ["396-10-1144", "396-10-1145"],
        ),
        (
            json.dumps({"orders": ["396-10-1142", 396101143], "n": 12345678901}).encode(),
            {"Content-Type": "application/json"},
            ["396-10-1142", "396-10-1143"],
        ),
        (b"\xff\xfe\x00396-10-1142\x00\x80junk", {"Content-Type": "text/plain"}, ["396-10-1142"]),
        (b"{not json, phone 0123456789012, 12-34-5678", {"Content-Type": "application/json"}, []),
        (b"", {}, []),
    ],
    ids=["form", "form-encoded", "json", "junk-bytes", "no-ids", "empty"],
)
async def test_ccnow_hints_come_from_any_body(
    client: Client, hub: FakeHub, body: bytes, headers: dict[str, str], expected: list[str]
) -> None:
    path = f"/notify/ccnow/default/{CCNOW_TOKEN}"
    status, _, _ = await send(client, "POST", path, data=body, headers=headers)
    assert status == 202
    await hub.wait_calls(1)
    # named (may start following) and mentioned: test_ccnow_notification_ids.py tells them apart
    assert hub.calls[0][2] + hub.calls[0][4] == expected


async def test_ccnow_hints_of_a_burst_are_merged_into_the_trailing_poll(
    client: Client, hub: FakeHub
) -> None:
    hub.gate = asyncio.Event()
    path = f"/notify/ccnow/default/{CCNOW_TOKEN}"
    assert (await send(client, "POST", path, data=b"396-10-0001"))[0] == 202
    await hub.wait_calls(1)
    for body in (b"396-10-0002", b"396-10-0003"):
        assert (await send(client, "POST", path, data=body))[0] == 202
    hub.gate.set()
    await hub.wait_calls(2)
    await settled(client)
    assert [call[2] for call in hub.calls] == [["396-10-0001"], ["396-10-0002", "396-10-0003"]]


def test_extract_ccnow_ids_is_bounded_and_ascii_only() -> None:
    many = " ".join(f"396-10-{n:04d}" for n in range(MAX_HINTS + 50)).encode()
    assert len(extract_ccnow_ids(many)) == MAX_HINTS
    arabic_indic = "٣٩٦-١٠-١١٤٢".encode()
    assert extract_ccnow_ids(arabic_indic) == []
    assert extract_ccnow_ids(b"a396-10-1142 3961011420 396-10-11423") == []


# --- debounce ---------------------------------------------------------------------------------


async def test_burst_of_50_posts_costs_at_most_two_provider_requests(
    client: Client, hub: FakeHub
) -> None:
    path = ccv_path(order_id="O-1")
    results = await asyncio.gather(*(send(client, "POST", path) for _ in range(50)))
    assert [status for status, _, _ in results] == [202] * 50
    await settled(client)
    assert 1 <= len(hub.calls) <= 2


async def test_burst_during_a_running_check_becomes_one_trailing_check(
    client: Client, hub: FakeHub
) -> None:
    hub.gate = asyncio.Event()  # the first check is still running while the burst arrives
    path = ccv_path(order_id="O-1")
    assert (await send(client, "POST", path))[0] == 202
    await hub.wait_calls(1)
    results = await asyncio.gather(*(send(client, "POST", path) for _ in range(49)))
    assert [status for status, _, _ in results] == [202] * 49
    hub.gate.set()
    await hub.wait_calls(2)
    await settled(client)
    assert len(hub.calls) == 2
    # The trailing check answers the earliest notification it merged, not the first one.
    assert hub.calls[1][3] > hub.calls[0][3]


async def test_different_orders_are_not_coalesced(client: Client, hub: FakeHub) -> None:
    await asyncio.gather(*(send(client, "POST", ccv_path(order_id=f"O-{n}")) for n in range(5)))
    await hub.wait_calls(5)
    assert sorted(call[2] for call in hub.calls) == [f"O-{n}" for n in range(5)]


async def test_debouncer_calls_first_at_once_then_one_trailing_call() -> None:
    calls: list[float] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def check(received_at: float) -> None:
        calls.append(received_at)
        started.set()
        await release.wait()

    debouncer = Debouncer(0.01)
    assert debouncer.trigger("k", check, 1.0) == "scheduled"
    await asyncio.wait_for(started.wait(), 2)
    assert calls == [1.0]
    assert debouncer.trigger("k", check, 3.0) == "scheduled"
    assert debouncer.trigger("k", check, 2.0) == "coalesced"
    release.set()
    await debouncer.join()
    # One trailing call, answering the earliest of the merged triggers.
    assert calls == [1.0, 2.0]
    await debouncer.close()


async def test_debouncer_change_after_cooldown_is_not_lost() -> None:
    calls: list[float] = []

    async def check(received_at: float) -> None:
        calls.append(received_at)

    debouncer = Debouncer(0.01)
    debouncer.trigger("k", check, 1.0)
    await debouncer.join()
    debouncer.trigger("k", check, 2.0)  # inside the cooldown: waits, but happens
    await debouncer.join()
    assert calls == [1.0, 2.0]
    await debouncer.close()


async def test_debouncer_is_bounded_and_drops_idle_keys_first() -> None:
    release = asyncio.Event()

    async def check(_: float) -> None:
        await release.wait()

    async def quick(_: float) -> None:
        return None

    debouncer = Debouncer(0.0, max_keys=3)
    debouncer.trigger("idle", quick, 0.0)
    await debouncer.join()
    assert debouncer.trigger("a", check, 0.0) == "scheduled"
    assert debouncer.trigger("b", check, 0.0) == "scheduled"
    assert debouncer.trigger("c", check, 0.0) == "scheduled"  # the idle key made room
    assert len(debouncer) == 3
    assert debouncer.trigger("d", check, 0.0) == "refused"  # every slot is busy
    release.set()
    await debouncer.join()
    assert debouncer.trigger("d", check, 0.0) == "scheduled"
    await debouncer.close()


async def test_debouncer_close_cancels_running_calls() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def check(_: float) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    debouncer = Debouncer(1.0)
    debouncer.trigger("k", check, 0.0)
    await asyncio.wait_for(started.wait(), 2)
    await debouncer.close()
    assert cancelled.is_set()
    assert debouncer.trigger("k", check, 0.0) == "refused"


async def test_debouncer_close_lets_a_call_end_within_its_grace_and_cancels_one_beyond_it() -> None:
    # CCV calls a notification URL once: a check under way at shutdown may finish.
    release = asyncio.Event()
    ended: list[str] = []
    cancelled: list[str] = []

    async def check(key: str) -> None:
        try:
            if key == "quick":
                await release.wait()
            else:
                await asyncio.Event().wait()
            ended.append(key)
        except asyncio.CancelledError:
            cancelled.append(key)
            raise

    debouncer = Debouncer(1.0)
    debouncer.trigger("quick", lambda _: check("quick"), 0.0)
    debouncer.trigger("hung", lambda _: check("hung"), 0.0)
    await asyncio.sleep(0)  # both calls start
    closing = asyncio.ensure_future(debouncer.close(grace_s=0.5))
    await asyncio.sleep(0)
    assert debouncer.trigger("late", lambda _: check("late"), 0.0) == "refused"
    release.set()
    await asyncio.wait_for(closing, 5)
    assert ended == ["quick"]
    assert cancelled == ["hung"]


async def test_hub_failure_is_logged_and_next_notification_still_works(
    client: Client, hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    hub.fail_with = RuntimeError("boom")
    caplog.set_level(logging.ERROR, logger="reconciler.server")
    assert (await send(client, "POST", ccv_path(order_id="O-1")))[0] == 202
    await hub.wait_calls(1)
    await settled(client)
    assert [r.getMessage() for r in caplog.records] == ["notification.check_failed"]
    hub.fail_with = None
    assert (await send(client, "POST", ccv_path(order_id="O-2")))[0] == 202
    await hub.wait_calls(2)


async def test_hung_hub_call_times_out_and_frees_the_key() -> None:
    calls: list[float] = []
    started = asyncio.Event()

    async def hang(received_at: float) -> None:
        calls.append(received_at)
        started.set()
        if len(calls) == 1:
            await asyncio.Event().wait()

    debouncer = Debouncer(0.0, call_timeout_s=0.05)
    debouncer.trigger("k", hang, 1.0)
    await asyncio.wait_for(started.wait(), 2)
    debouncer.trigger("k", hang, 2.0)
    await asyncio.wait_for(debouncer.join(), 2)
    assert calls == [1.0, 2.0]
    await debouncer.close()


# --- /healthz and /metrics --------------------------------------------------------------------


def _source(last_success: float | None, *, failing: bool = False) -> SourceHealth:
    return SourceHealth(
        source="ccv",
        account="default",
        last_success=last_success,
        failure_streak=3 if failing else 0,
        failing=failing,
        interval_s=60.0,
    )


async def test_healthz_is_200_while_every_source_answered_recently(
    client: Client, hub: FakeHub, clock: Clock
) -> None:
    hub.health_value = Health(
        sources=(_source(clock.now - 100), _source(clock.now - 180)), outbox={"log": 0, "hook": 4}
    )
    status, data, _ = await send(client, "GET", "/healthz")
    assert status == 200
    assert data["status"] == "ok"
    assert data["outbox"] == {"log": 0, "hook": 4}
    assert data["sources"][0] == {
        "source": "ccv",
        "account": "default",
        "last_success": iso_time(clock.now - 100),
        "failure_streak": 0,
        "failing": False,
        "healthy": True,
        "resting_until": None,
    }


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(lambda now: _source(now - 181), id="older-than-3-intervals"),
        pytest.param(lambda now: _source(now - 10, failing=True), id="failing"),
        pytest.param(lambda now: _source(None), id="never-answered"),
    ],
)
async def test_healthz_is_503_when_a_source_is_stale_or_failing(
    client: Client, hub: FakeHub, clock: Clock, entry: Callable[[float], SourceHealth]
) -> None:
    hub.health_value = Health(sources=(_source(clock.now), entry(clock.now)))
    status, data, _ = await send(client, "GET", "/healthz")
    assert status == 503
    assert data["status"] == "unhealthy"
    assert [s["healthy"] for s in data["sources"]] == [True, False]


async def test_healthz_follows_the_injected_clock(
    client: Client, hub: FakeHub, clock: Clock
) -> None:
    hub.health_value = Health(sources=(_source(clock.now),))
    assert (await send(client, "GET", "/healthz"))[0] == 200
    clock.now += 181
    assert (await send(client, "GET", "/healthz"))[0] == 503


async def test_healthz_and_metrics_refuse_post(client: Client) -> None:
    for path in ("/healthz", "/metrics"):
        status, _, response = await send(client, "POST", path)
        assert status == 405
        assert response.headers["Allow"] == "GET, HEAD"


async def test_metrics_are_refreshed_and_rendered(
    client: Client, hub: FakeHub, metrics: Metrics
) -> None:
    metrics.set_followed({("ccv", "default", "Processing"): 2}, accounts={("ccv", "default")})
    assert (await send(client, "POST", ccv_path(order_id="O-1")))[0] == 202
    assert (await send(client, "POST", ccv_path(order_id="O-2") + "x"))[0] == 404
    url = URL(f"http://127.0.0.1:{client.port}/metrics")
    async with client.session.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    assert hub.refreshed == 1
    for name in (
        "reconciler_followed_orders",
        "reconciler_checks_total",
        "reconciler_check_failures_total",
        "reconciler_last_success_timestamp_seconds",
        "reconciler_outbox_backlog",
        "reconciler_events_total",
        "reconciler_notification_latency_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    followed = 'reconciler_followed_orders{account="default",source="ccv",status="Processing"}'
    assert f"{followed} 2.0" in text
    assert 'reconciler_notifications_total{outcome="accepted",source="ccv"} 1.0' in text
    assert 'reconciler_notifications_total{outcome="bad_signature",source="ccv"} 1.0' in text


async def test_metrics_while_the_store_fails_are_served_without_a_traceback_per_scrape(
    client: Client, hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler")
    hub.refresh_fails_with = StoreError("database or disk is full: /var/lib/reconciler/db")
    for _ in range(2):
        status, body, _ = await send(client, "GET", "/metrics")
        assert status == 200
        assert b"reconciler_checks_total" in body
    assert hub.refreshed == 2
    # The store's health logs the failure once when it starts; scrapes add nothing.
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


# --- secrets and logs -------------------------------------------------------------------------


async def test_secrets_never_reach_logs_or_answers(
    client: Client, hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler")
    answers = []
    for method, path in [
        ("POST", f"/notify/ccnow/default/{CCNOW_TOKEN}"),
        ("POST", f"/notify/ccnow/default/{CCNOW_TOKEN[:-2]}"),
        ("GET", f"/notify/ccnow/default/{CCNOW_TOKEN}"),
        ("POST", ccv_path(order_id="O-1")),
        ("POST", ccv_path(order_id="O-1")[:-3]),
    ]:
        status, data, _ = await send(client, method, path)
        answers.append(f"{status} {data}")
    await hub.wait_calls(2)
    await settled(client)
    sig = ccv_path(order_id="O-1").rsplit("/", 1)[1]
    logged = [r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records]
    assert any("notification.accepted" in line for line in logged)
    assert any("request.rejected" in line for line in logged)
    for text in logged + answers:
        for secret in (CCNOW_TOKEN, CCNOW_TOKEN[:-2], RECEIVER_SECRET, sig):
            assert secret not in text


async def test_accepted_is_info_once_per_check_and_rejected_is_debug(
    client: Client, hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler.server")
    hub.gate = asyncio.Event()
    for _ in range(5):
        await send(client, "POST", ccv_path(order_id="O-1"))
    await send(client, "POST", "/notify/ccv/nobody/order/O-1/forged")  # no such account
    hub.gate.set()
    await settled(client)
    info = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.getMessage() for r in info] == ["notification.accepted"] * 2
    assert info[0].fields == {  # type: ignore[attr-defined]
        "source": "ccv",
        "account": "default",
        "kind": "order",
        "order_id": "O-1",
    }
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG].count(
        "request.rejected"
    ) == 1


# --- the Receiver on a real port ----------------------------------------------------------------


async def test_receiver_serves_on_a_free_port_and_close_cancels_checks(
    hub: FakeHub, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    hub.gate = asyncio.Event()  # never opened: close() must cancel the running check
    app = build_app(RECEIVER, hub, ccv_accounts=["default"], ccnow_tokens={}, metrics=metrics)
    receiver = Receiver(app)
    port = await receiver.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            url = URL(f"http://127.0.0.1:{port}{ccv_path(order_id='O-9')}", encoded=True)
            async with session.post(url) as response:
                assert response.status == 202
        await hub.wait_calls(1)
        caplog.set_level(logging.DEBUG, logger="reconciler")
        # Junk from the network is a debug line, not an error with a traceback.
        for junk in (b"GARBAGE \xff\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(junk)
            assert (await asyncio.wait_for(reader.readline(), 2)).startswith(b"HTTP/1.0 400")
            writer.close()
            await writer.wait_closed()
    finally:
        await receiver.close()
    assert len(app[DEBOUNCER]) == 1 and not hub.gate.is_set()
    assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "http.bad_request" in [r.getMessage() for r in caplog.records]
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/healthz")


async def test_receiver_close_lets_a_check_under_way_end(
    hub: FakeHub, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    hub.gate = asyncio.Event()
    app = build_app(
        RECEIVER,
        hub,
        ccv_accounts=["default"],
        ccnow_tokens={},
        metrics=metrics,
        checks_stop_timeout_s=5.0,
    )
    receiver = Receiver(app)
    port = await receiver.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        url = URL(f"http://127.0.0.1:{port}{ccv_path(order_id='O-9')}", encoded=True)
        async with session.post(url) as response:
            assert response.status == 202
    await hub.wait_calls(1)
    closing = asyncio.ensure_future(receiver.close())
    # The check under way holds the close, within the bound: it waits for the check.
    await poll_until(
        lambda: closing.done() or Debouncer.close.__code__ in awaiting(closing),
        10,
        "the close waits",
    )
    assert not closing.done()
    hub.gate.set()
    await asyncio.wait_for(closing, 5)
    # The check ended by itself: nothing was left to cancel.
    assert "notification.checks_cancelled" not in [r.getMessage() for r in caplog.records]


# --- hostile input ----------------------------------------------------------------------------

_VALID_PATHS = [
    ccv_path(order_id="O-1"),
    ccv_path(reference="inv 1/ä"),
    f"/notify/ccnow/default/{CCNOW_TOKEN}",
    "/healthz",
    "/metrics",
]
# Printable ASCII gets past the HTTP parser, so most inputs reach our own path handling.
_ASCII = st.characters(min_codepoint=33, max_codepoint=126)
_SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "notify",
            "ccv",
            "ccnow",
            "default",
            "second",
            "order",
            "ref",
            "O-1",
            "..",
            ".",
            "%",
            "%2",
            "%2F",
            "%ff",
            "%C3%A4",
            "%ED%A0%80",
            "%00",
            "healthz",
            "metrics",
            "",
            CCNOW_TOKEN,
            ccv_path(order_id="O-1").rsplit("/", 1)[1],
        ]
    ),
    st.text(max_size=20).map(lambda text: quote(text, safe="")),
    st.text(_ASCII, max_size=20),
)
# Paths that the HTTP parser lets through to the receiver.
_TARGETS = st.one_of(
    st.lists(_SEGMENTS, max_size=9).map(lambda parts: "/" + "/".join(parts)),
    st.lists(_SEGMENTS, min_size=4, max_size=4).map(lambda p: "/notify/ccv/" + "/".join(p)),
    st.lists(_SEGMENTS, min_size=2, max_size=2).map(lambda p: "/notify/ccnow/" + "/".join(p)),
    st.sampled_from(_VALID_PATHS),
    st.sampled_from(_VALID_PATHS[:3]).map(lambda path: "/any/prefix" + path + "?q=%ff"),
    # a valid URL with one character changed
    st.tuples(st.sampled_from(_VALID_PATHS[:3]), st.integers(0, 200), _ASCII).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
    ),
    st.text(_ASCII, max_size=200).map(lambda text: "/" + text),
)
_PATHS = st.one_of(
    _TARGETS,
    st.text(max_size=100),  # raw unicode, spaces, control characters
    st.text(_ASCII, min_size=1, max_size=3).map(lambda text: "/" + text * 4000),
)
# Mostly real methods: a method the HTTP parser rejects never reaches our code.
_METHODS = st.sampled_from(
    ["GET", "POST", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "PRI", "BREW"]
)
_HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "Content-Length",
            "Transfer-Encoding",
            "Content-Type",
            "Content-Encoding",
            "Expect",
            "Connection",
            "Upgrade",
            "X-Forwarded-For",
        ]
    ),
    st.text(st.characters(whitelist_categories=["L", "N"], max_codepoint=127), max_size=12),
)
_HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            "-1",
            "abc",
            "99999999999999999999999",
            "1e3",
            "0x10",
            " 5",
            "chunked",
            "gzip",
            "chunked, gzip",
            "identity",
            "deflate",
            "br",
            "100-continue",
            "websocket",
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain; charset=latin1",
            "multipart/form-data; boundary=x",
            "keep-alive",
            "",
        ]
    ),
    st.integers(0, 400).map(str),
    st.text(_ASCII, max_size=40),
    st.text(max_size=40),
)
_BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"order_number=396-10-1142&x=%ff%fe",
            b'{"order": "396101142", "n": [1, 2, {"a": null}]}',
            b"0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            b"zz\r\nhello\r\n0\r\n\r\n",
            gzip.compress(b"396-10-1142"),
            gzip.compress(b"0" * 1_000_000),  # inflates far past the body limit
            b"x" * (64 * 1024 + 10),
        ]
    ),
)


async def raw_status(port: int, request: bytes) -> int | None:
    """Send raw bytes, return the status of the answer, None if the server waits or hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), 0.5)
        except asyncio.TimeoutError:
            return None  # e.g. a Content-Length promising more body: waiting is correct
        parts = line.split()
        # A 100 Continue may come first; the final answer follows it.
        if len(parts) >= 2 and parts[1] == b"100":
            await asyncio.wait_for(reader.readline(), 0.5)
            line = await asyncio.wait_for(reader.readline(), 0.5)
            parts = line.split()
        return int(parts[1]) if len(parts) >= 2 else None
    except (ConnectionError, asyncio.TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture
async def port(hub: FakeHub, metrics: Metrics, clock: Clock) -> AsyncIterator[int]:
    app = build_app(
        RECEIVER,
        hub,
        ccv_accounts=["default"],
        ccnow_tokens={"default": Secret(CCNOW_TOKEN)},
        metrics=metrics,
        clock=clock,
    )
    receiver = Receiver(app)
    try:
        yield await receiver.start("127.0.0.1", 0)
    finally:
        await receiver.close()


def _raw_request(method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    if not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass") + body


# 80 requests per test (200 took 3 s of a loaded run each); the receiver's refusals have
# tests of their own (bad encodings, malformed requests, hostile input, below).
_FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ
@given(
    method=_METHODS,
    path=_PATHS,
    headers=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=4),
    body=_BODIES,
)
async def test_no_input_gets_a_500(
    port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    request = _raw_request(method, path, headers, body)
    status = await raw_status(port, request)
    assert status is None or status < 500, (status, request[:300])


@_FUZZ
@given(
    path=_TARGETS,
    content_type=st.one_of(_HEADER_VALUES.filter(str.isprintable), st.just("")),
    encoding=st.sampled_from(["identity", "gzip", "deflate"]),
    body=_BODIES,
)
async def test_no_path_or_body_that_gets_past_http_parsing_gets_a_500(
    port: int, path: str, content_type: str, encoding: str, body: bytes
) -> None:
    # Well-formed HTTP, so that the hostile part reaches the receiver's own code.
    headers = [("Content-Type", content_type), ("Content-Encoding", encoding)]
    request = _raw_request("POST", path, headers, body)
    status = await raw_status(port, request)
    assert status is None or status < 500, (status, request[:300])


async def test_receiver_still_answers_after_hostile_input(port: int, hub: FakeHub) -> None:
    for junk in (b"\x16\x03\x01\x02\x00", b"GET /%ff HTTP/1.1\r\n\r\n", b"POST / HTTP/9.9\r\n\r\n"):
        await raw_status(port, junk)
    request = f"POST {ccv_path(order_id='O-1')} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    assert await raw_status(port, request) == 202
    await hub.wait_calls(1)


def test_parse_notify_path_matches_by_last_segments() -> None:
    assert parse_notify_path("/x/y/notify/ccnow/a/t?q=1") is not None
    assert parse_notify_path("http://h/notify/ccv/a/order/v/s") is not None
    assert parse_notify_path("/notify/ccv/a/order/v") is None
    assert parse_notify_path("/notify/ccnow/a") is None
    assert parse_notify_path("") is None


# --- bad encodings, error pages, connection bounds ---------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decode_is_a_400_anywhere_without_a_traceback(
    port: int, hub: FakeHub, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler")
    paths = [
        "/",
        "/healthz",
        "/metrics",
        ccv_path(order_id="O-1"),
        f"/notify/ccnow/default/{CCNOW_TOKEN}",
        "/notify/ccnow/default/wrong-token-0000000000",
    ]
    for _ in range(5):
        for path in paths:
            request = _raw_request("POST", path, [("Content-Encoding", encoding)], b"garbage" * 9)
            assert await raw_status(port, request) == 400, path
    assert hub.calls == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not any(r.exc_info for r in caplog.records)
    # aiohttp's own line about it is rate-limited: one for 30 bad requests.
    assert len([r for r in caplog.records if r.name == "reconciler.server.http"]) <= 1


async def _raw_answer(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 3)
    finally:
        await close_all([writer])


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Secret\x01: sk_live_leak\r\n\r\n",
        b"GET /sk_live_leak\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"sk_live_leak" * 2000 + b"\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nContent-Length: sk_live_leak\r\n\r\n",
    ],
)
async def test_a_malformed_request_gets_a_fixed_400_page(port: int, request_bytes: bytes) -> None:
    answer = await _raw_answer(port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"400", answer[:200]
    assert body == b'{"error": "bad request"}'
    assert b"sk_live_leak" not in answer


@contextlib.asynccontextmanager
async def bounded_receiver(
    hub: FakeHub, metrics: Metrics, *, max_connections: int, header_timeout_s: float
) -> AsyncIterator[int]:
    config = dataclasses.replace(
        RECEIVER, max_connections=max_connections, header_timeout_s=header_timeout_s
    )
    app = build_app(config, hub, ccv_accounts=["default"], ccnow_tokens={}, metrics=metrics)
    receiver = Receiver(app, limits=ConnectionLimits.from_config(config))
    try:
        yield await receiver.start("127.0.0.1", 0)
    finally:
        await receiver.close()


async def close_all(writers: Sequence[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_idle_and_slow_request_heads_are_closed_after_the_header_timeout(
    hub: FakeHub, metrics: Metrics
) -> None:
    async with bounded_receiver(hub, metrics, max_connections=20, header_timeout_s=0.3) as port:
        started = time.monotonic()
        silent = await asyncio.open_connection("127.0.0.1", port)
        trickle = await asyncio.open_connection("127.0.0.1", port)
        trickle[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        kept = await asyncio.open_connection("127.0.0.1", port)
        kept[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # answered, then idle
        assert (await asyncio.wait_for(kept[0].readline(), 3)).startswith(b"HTTP/1.1 200")
        for reader, _ in (silent, trickle, kept):
            await asyncio.wait_for(reader.read(), 10)  # EOF: the receiver closed it
        await close_all([silent[1], trickle[1], kept[1]])
        assert time.monotonic() - started >= 0.3


async def test_at_the_cap_idle_connections_make_room_and_healthz_answers(
    hub: FakeHub, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    async with bounded_receiver(hub, metrics, max_connections=20, header_timeout_s=30) as port:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 200
        # The 11 that were idle longest were closed to stay within 20 (the probe took one).
        for reader, _ in idle[:11]:
            assert await asyncio.wait_for(reader.read(), 3) == b""
        reader, writer = idle[-1]
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 3)).startswith(b"HTTP/1.1 200")
        await close_all([writer for _, writer in idle])
    warnings = [r for r in caplog.records if r.getMessage() == "receiver.at_capacity"]
    assert len(warnings) == 1  # rate-limited


async def test_when_every_connection_is_busy_a_new_one_is_shed_with_503(
    hub: FakeHub, metrics: Metrics
) -> None:
    async with bounded_receiver(hub, metrics, max_connections=3, header_timeout_s=30) as port:
        busy = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # The body never comes: the request stays in progress.
            writer.write(
                f"POST {ccv_path(order_id='O-1')} HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 10\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            assert (await asyncio.wait_for(reader.readline(), 3)).startswith(b"HTTP/1.1 100")
            busy.append((reader, writer))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = await asyncio.wait_for(reader.read(), 3)
        assert answer.startswith(b"HTTP/1.1 503") and answer.endswith(b'{"error": "busy"}')
        await close_all([writer, *(w for _, w in busy)])
    assert hub.calls == []


async def test_a_trickled_body_gets_408_and_frees_its_connection(
    hub: FakeHub, metrics: Metrics
) -> None:
    async with bounded_receiver(hub, metrics, max_connections=3, header_timeout_s=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = f"POST {ccv_path(order_id='O-1')} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
        writer.write(head.encode() + b"\r\nab")  # 2 of 10 bytes, then nothing
        assert (await asyncio.wait_for(reader.readline(), 3)).startswith(b"HTTP/1.1 408")
        await close_all([writer])
    assert hub.calls == []


@pytest.mark.parametrize(
    ("configured", "nofile", "cap"),
    [(None, 1024, 512), (None, 1 << 20, 1000), (20, 1024, 20), (5000, 1024, 512), (None, 1, 1)],
)
def test_connection_cap_stays_below_the_open_file_limit(
    configured: int | None, nofile: int, cap: int
) -> None:
    assert connection_cap(configured, nofile) == cap


async def test_notification_series_are_exported_at_0_before_the_first_notification(
    client: Client,
) -> None:
    # A dashboard's panel or a rate() shows 0 after a start, not "no data".
    async with client.session.get(URL(f"http://127.0.0.1:{client.port}/metrics")) as response:
        text = await response.text()
    for source in ("ccv", "ccnow"):
        assert f'reconciler_notifications_total{{outcome="accepted",source="{source}"}} 0.0' in text
        assert f'reconciler_notification_latency_seconds_count{{source="{source}"}} 0.0' in text
