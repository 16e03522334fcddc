"""Settling an uncertain write raises one event, delivered like every other: a CCNow action
settled by `ccnow resolve` (locally, through the daemon's API) is `order.action_resolved`, a
CCV submit settled by its notification or by tracking its order with the reference (the API,
`track --ref` locally or through the running daemon) is `order.submit_resolved`. Settling it
again raises nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.store import WriterLock
from tests.conftest import call_cli, free_port, poll_until, read_events, write_config
from tests.fake_ccv_writes import DROP, FakeCCVWrites, submit_body
from tests.fake_providers import FakeCCNow, Reply, cut_off
from tests.server.test_api import ORDER, Api, api_toml
from tests.writes.test_ccnow_actions import daemon_with_api
from tests.writes.test_submit_crash import query, submission_state

A, B = "396-10-1142", "397-10-1159"
ACTION_RESOLVED = "order.action_resolved"
SUBMIT_RESOLVED = "order.submit_resolved"


def of_type(tmp_path: Path, type: str) -> list[dict[str, Any]]:
    return [e for e in read_events(tmp_path) if e["type"] == type]


async def uncertain_adjust(tmp_path: Path, fake_ccnow: FakeCCNow, extra: str = "") -> Path:
    """A config whose store holds one uncertain adjust of A (its answer cut off)."""
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [cut_off(f"{A} pend")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=extra)
    result = await call_cli("--config", cfg, "ccnow", "adjust", A, "--amount", "7.25")
    assert result.code == 75, result.stderr
    assert len(of_type(tmp_path, "order.action_uncertain")) == 1
    return cfg


def action_resolved_data(resolved: str, words: str) -> dict[str, Any]:
    return {
        "source": "ccnow",
        "account": "default",
        "order_id": A,
        # The order's fields: A is not followed (its adjust's answer was lost, no status came).
        "external_reference": None,
        "previous_status": None,
        "status": None,
        "end_state": False,
        "severity": "info",
        "via": "action",
        "unknown_status": False,
        "action": "adjust",
        "command_id": 1,
        "answer": f"resolved by hand: {words}",
        "resolved": resolved,
    }


@pytest.mark.parametrize(
    ("flag", "resolved", "words"),
    [("--sent", "sent", "CCNow has it"), ("--not-sent", "not_sent", "CCNow does not have it")],
)
async def test_ccnow_resolve_raises_one_action_resolved(
    tmp_path: Path, fake_ccnow: FakeCCNow, flag: str, resolved: str, words: str
) -> None:
    cfg = await uncertain_adjust(tmp_path, fake_ccnow)
    result = await call_cli("--config", cfg, "ccnow", "resolve", A, flag)
    assert result.code == 0, result.stderr
    # Delivered before the command ends, as an action's own events are.
    events = of_type(tmp_path, ACTION_RESOLVED)
    assert [e["data"] for e in events] == [action_resolved_data(resolved, words)]
    assert (events[0]["subject"], events[0]["source"]) == (A, "reconciler/ccnow/default")
    uncertain = of_type(tmp_path, "order.action_uncertain")[0]
    assert events[0]["id"] != uncertain["id"]
    again = await call_cli("--config", cfg, "ccnow", "resolve", A, flag)
    assert again.code == 65
    assert len(of_type(tmp_path, ACTION_RESOLVED)) == 1


async def test_the_api_resolve_raises_one_action_resolved_for_every_sink_and_the_feed(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    port = free_port()
    cfg = await uncertain_adjust(tmp_path, fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port) as http:
        async with http.post(f"{base}/ccnow/actions/resolve", json={"order_id": B, "sent": True}):
            pass  # an order with nothing uncertain: 404, no event
        async with http.post(
            f"{base}/ccnow/actions/resolve", json={"order_id": A, "sent": False}
        ) as r:
            assert r.status == 200
        await poll_until(lambda: of_type(tmp_path, ACTION_RESOLVED), 60, "the event delivered")
        async with http.post(
            f"{base}/ccnow/actions/resolve", json={"order_id": A, "sent": True}
        ) as r:
            assert r.status == 404
        async with http.get(f"{base}/events", params={"type": ACTION_RESOLVED}) as r:
            feed = (await r.json())["events"]
    events = of_type(tmp_path, ACTION_RESOLVED)
    # The daemon's pass may have followed A from CCNow's pending list before the resolve: its
    # status then, unchanged by a person's word, else none.
    statuses = {k: events[0]["data"][k] for k in ("previous_status", "status")}
    assert statuses["status"] in (None, "pending")
    assert statuses["previous_status"] == statuses["status"]
    assert [e["data"] for e in events] == [
        {**action_resolved_data("not_sent", "CCNow does not have it"), **statuses}
    ]
    assert [e["id"] for e in feed] == [events[0]["id"]]


async def uncertain_submit(api: Api, fake: FakeCCVWrites, reference: str) -> None:
    fake.submit_replies = [Reply(DROP)]
    body = submit_body(externalReference=reference)
    status, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (status, document["state"]) == (502, "uncertain")


def submit_resolved_data(
    reference: str, order_id: str | None, how: str, submission_id: int = 1
) -> dict[str, Any]:
    return {
        "source": "ccv",
        "account": "default",
        "order_id": order_id,
        "external_reference": reference,
        "previous_status": None,
        "status": None,
        "end_state": False,
        "severity": "info",
        "via": "action",
        "unknown_status": False,
        "submission_id": submission_id,
        "reason": "connection",
        "location": None,  # a lost answer gave none
        "how": how,
    }


async def delivered(tmp_path: Path, count: int = 1) -> list[dict[str, Any]]:
    await poll_until(
        lambda: len(of_type(tmp_path, SUBMIT_RESOLVED)) >= count, 10, "the event delivered"
    )
    return of_type(tmp_path, SUBMIT_RESOLVED)


async def test_a_notification_settling_a_submit_raises_one_submit_resolved(
    tmp_path: Path, api: Api, fake: FakeCCVWrites
) -> None:
    await uncertain_submit(api, fake, "shop-9")
    for _ in range(2):  # CCV notifies again: settled already, nothing more
        await api.daemon.hub.check_ccv_reference("default", "shop-9", 0.0)
    events = await delivered(tmp_path)
    assert [e["data"] for e in events] == [submit_resolved_data("shop-9", None, "notification")]
    assert "subject" not in events[0]  # no order id is known yet
    uncertain = of_type(tmp_path, "order.submit_uncertain")
    assert [e["data"]["reason"] for e in uncertain] == ["connection"]
    assert events[0]["id"] != uncertain[0]["id"]
    _, feed, _ = await api.call("GET", f"/api/v1/events?type={SUBMIT_RESOLVED}")
    assert [e["id"] for e in feed["events"]] == [events[0]["id"]]


async def test_tracking_the_order_through_the_api_raises_one_submit_resolved(
    tmp_path: Path, api: Api, fake: FakeCCVWrites
) -> None:
    await uncertain_submit(api, fake, "shop-3")
    track = {"source": "ccv", "order_id": ORDER, "external_reference": "shop-3"}
    assert (await api.call("POST", "/api/v1/orders", body=track))[0] == 201
    assert (await api.call("POST", "/api/v1/orders", body=track))[0] == 200
    events = await delivered(tmp_path)
    assert [e["data"] for e in events] == [submit_resolved_data("shop-3", ORDER, "track")]
    assert events[0]["subject"] == ORDER


async def test_track_ref_while_the_daemon_runs_settles_through_it_with_one_event(
    tmp_path: Path, api: Api, fake: FakeCCVWrites
) -> None:
    # The daemon numbers the events it stores: a second process storing one beside it would
    # take its next number. The command hands the settlement to the daemon.
    await uncertain_submit(api, fake, "shop-4")
    cfg = tmp_path / "reconciler.toml"
    for _ in range(2):
        result = await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "shop-4")
        assert result.code == 0, result.stderr
    events = await delivered(tmp_path)
    assert [e["data"] for e in events] == [submit_resolved_data("shop-4", ORDER, "track")]
    assert api.submission("shop-4") == ("resolved", ORDER)


async def test_track_ref_with_the_daemon_stopped_stores_one_event_for_the_next_delivery(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [Reply(DROP)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = submit_body(externalReference="shop-6")
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=json.dumps(stdin).encode())
    assert result.code == 75, result.stderr
    for _ in range(2):
        result = await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "shop-6")
        assert result.code == 0, result.stderr
    await call_cli("--config", cfg, "catch-up")  # the writer that delivers it
    events = of_type(tmp_path, SUBMIT_RESOLVED)
    assert [e["data"] for e in events] == [submit_resolved_data("shop-6", ORDER, "track")]


async def test_track_ref_beside_a_daemon_without_api_leaves_the_submit_uncertain_and_says_so(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [Reply(DROP)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="shop-8")).encode()
    assert (await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)).code == 75
    no_api = write_config(tmp_path, ccv=fake)
    lock = WriterLock(tmp_path / "reconciler.db")
    lock.acquire()  # what a running daemon holds
    try:
        result = await call_cli("--config", no_api, "track", "ccv", ORDER, "--ref", "shop-8")
    finally:
        lock.release()
    assert result.code == 75
    assert "stays uncertain" in result.stderr and "shop-8" in result.stderr
    assert submission_state(tmp_path, "shop-8") == "uncertain"
    assert query(tmp_path, "SELECT count(*) FROM events WHERE type = ?", SUBMIT_RESOLVED) == [(0,)]
    # The daemon stopped: the same line settles it.
    result = await call_cli("--config", no_api, "track", "ccv", ORDER, "--ref", "shop-8")
    assert result.code == 0, result.stderr
    assert submission_state(tmp_path, "shop-8") == "resolved"
    assert query(tmp_path, "SELECT count(*) FROM events WHERE type = ?", SUBMIT_RESOLVED) == [(1,)]


async def test_track_ref_beside_a_catch_up_says_another_process_holds_the_store(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # A catch-up (no daemon) holds the store; the config has an [api] nobody serves: nothing
    # is settled, and the message blames no daemon.
    fake.submit_replies = [Reply(DROP)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="shop-9")).encode()
    assert (await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)).code == 75
    lock = WriterLock(tmp_path / "reconciler.db")
    lock.acquire()
    try:
        result = await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "shop-9")
    finally:
        lock.release()
    assert result.code == 75
    assert "another reconciler process holds the store" in result.stderr, result.stderr
    assert "did not answer" not in result.stderr
    assert submission_state(tmp_path, "shop-9") == "uncertain"


async def test_every_event_stored_is_counted_in_the_metrics(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # README: reconciler_events_total counts the events written, by type; a resolve through
    # the API (not a pass) stores one too.
    port, receiver_port = free_port(), free_port()
    cfg = await uncertain_adjust(
        tmp_path, fake_ccnow, extra=api_toml(port, receiver_port=receiver_port)
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port) as http:
        async with http.post(
            f"{base}/ccnow/actions/resolve", json={"order_id": A, "sent": True}
        ) as r:
            assert r.status == 200
        async with http.get(f"http://127.0.0.1:{receiver_port}/metrics") as r:
            text = await r.text()
    assert f'reconciler_events_total{{type="{ACTION_RESOLVED}"}} 1.0' in text
