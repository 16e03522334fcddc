"""Writes of an account the config no longer names (removed, or renamed): an uncertain CCNow
action or CCV submit is still settled by a person's word under the old name, and the warning
about the account (`orders.account_not_configured`) and `status` count what waits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, call_cli, free_port, read_events, write_config
from tests.fake_ccv_writes import DROP, FakeCCVWrites, submit_body
from tests.fake_providers import FakeCCNow, Reply, cut_off
from tests.server.test_api import ORDER, api_toml
from tests.writes.test_ccnow_actions import daemon_with_api
from tests.writes.test_submit_crash import submission_state

A = "396-10-1142"
OTHER = "5d2f7c1e-3a4b-4c6d-8e9f-0a1b2c3d4e5f"
WARNING = "orders.account_not_configured"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


def warning_about(result: Result, account: str) -> dict[str, Any]:
    (line,) = [
        line
        for line in result.log_lines()
        if line["message"] == WARNING and line["account"] == account
    ]
    return line


async def status_of(cfg: Path, account: str) -> dict[str, Any] | None:
    status = await call_cli("--config", cfg, "status", "--json")
    assert status.code == 0, status.stderr
    found = [a for a in json.loads(status.stdout)["accounts"] if a["account"] == account]
    return found[0] if found else None


async def ca_removed_with_an_uncertain_adjust(
    tmp_path: Path, fake_ccnow: FakeCCNow, extra: str = ""
) -> Path:
    """An adjust of A left uncertain under the CCNow account `ca` (its answer cut off), then
    `ca` renamed `us` in the config."""
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [cut_off(f"{A} pend")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra='name = "ca"', extra=extra)
    adjust = await call_cli("--config", cfg, "ccnow", "adjust", A, "--amount", "7.25")
    assert adjust.code == 75, adjust.stderr
    return write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra='name = "us"', extra=extra)


async def test_an_uncertain_action_of_a_removed_account_is_said_and_resolved_by_its_name(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = await ca_removed_with_an_uncertain_adjust(tmp_path, fake_ccnow)

    # The warning and status count it, and say how to settle it.
    caught = await call_cli("--config", cfg, "catch-up")
    warned = warning_about(caught, "ca")
    assert (warned["uncertain_writes"], warned["queued_writes"]) == (1, 0)
    assert (
        "ccnow resolve ID --sent|--not-sent --account ca` (with `--action ACTION` for an "
        "order with uncertain actions of several kinds)" in warned["hint"]
    ), warned["hint"]
    ca = await status_of(cfg, "ca")
    assert ca is not None
    assert (ca["health"], ca["uncertain_writes"], ca["queued_writes"]) == ("not_configured", 1, 0)

    # Without --account it looked under `us` alone and said A had nothing uncertain.
    here = await call_cli("--config", cfg, "ccnow", "resolve", A, "--not-sent")
    assert here.code == 65
    assert "account 'ca' has one: give --account ca" in here.stderr, here.stderr

    # It was refused as an unknown account (exit 2): now settled, with its event.
    resolved = await call_cli(
        "--config", cfg, "ccnow", "resolve", A, "--not-sent", "--account", "ca"
    )
    assert resolved.code == 0, resolved.stderr
    assert f"{A} adjust not sent (command 1)" in resolved.stdout
    (event,) = [e for e in read_events(tmp_path) if e["type"] == "order.action_resolved"]
    assert (event["data"]["account"], event["data"]["resolved"]) == ("ca", "not_sent")
    assert await status_of(cfg, "ca") is None  # no order of it, nothing waits

    # Once settled, a removed account's name is an unknown one again.
    again = await call_cli("--config", cfg, "ccnow", "resolve", A, "--sent", "--account", "ca")
    assert again.code == 2 and "no ccnow account named 'ca'" in again.stderr


async def test_the_running_daemon_resolves_an_action_of_a_removed_account(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    port = free_port()
    cfg = await ca_removed_with_an_uncertain_adjust(tmp_path, fake_ccnow, api_toml(port))
    async with daemon_with_api(cfg, port):
        resolved = await call_cli(
            "--config", cfg, "ccnow", "resolve", A, "--sent", "--account", "ca"
        )
        assert resolved.code == 0, resolved.stderr
        assert f"{A} adjust sent (command 1)" in resolved.stdout
    (event,) = [e for e in read_events(tmp_path) if e["type"] == "order.action_resolved"]
    assert (event["data"]["account"], event["data"]["resolved"]) == ("ca", "sent")


async def test_a_queued_action_of_a_removed_account_is_warned_about(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.always = Reply(200, "error_message system down for maintenance\n")
    cfg = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra='name = "ca"')
    ship = await call_cli("--config", cfg, "ccnow", "ship", A)
    assert ship.code == 75 and "queued 1" in ship.stderr, ship.stderr
    cfg = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra='name = "us"')
    checked = await call_cli("--config", cfg, "check")
    assert checked.code == 0, checked.stderr
    warned = warning_about(checked, "ca")
    assert (warned["uncertain_writes"], warned["queued_writes"]) == (0, 1)
    assert "queued actions are never sent" in warned["hint"]
    ca = await status_of(cfg, "ca")
    assert ca is not None and ca["queued_writes"] == 1


async def eu_renamed_with_an_uncertain_submit(
    tmp_path: Path, fake: FakeCCVWrites, extra: str
) -> Path:
    """A submit of reference `shop-7` left uncertain under the CCV account `eu` (its answer
    cut off), then `eu` renamed `asia` in the config."""
    fake.submit_replies = [Reply(DROP)]
    cfg = write_config(tmp_path, ccv=fake, ccv_extra='name = "eu"', extra=extra)
    stdin = json.dumps(submit_body(externalReference="shop-7")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    return write_config(tmp_path, ccv=fake, ccv_extra='name = "asia"', extra=extra)


async def test_track_ref_settles_an_uncertain_submit_of_a_removed_account(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = await eu_renamed_with_an_uncertain_submit(tmp_path, fake, api_toml(free_port()))

    status = await call_cli("--config", cfg, "status")
    warned = warning_about(status, "eu")
    assert warned["uncertain_writes"] == 1
    assert "track ccv ID --ref REF --account eu" in warned["hint"]

    # It was refused as an unknown account (exit 2), and the submit stayed uncertain unsaid.
    track = ("track", "ccv", ORDER, "--ref", "shop-7", "--account", "eu")
    tracked = await call_cli("--config", cfg, *track)
    assert tracked.code == 0, tracked.stderr
    assert submission_state(tmp_path, "shop-7") == "resolved"
    # The order is tracked under `eu`, as the word named it: open there until it is moved.
    warned = warning_about(await call_cli("--config", cfg, "check"), "eu")
    assert (warned["open_orders"], warned["uncertain_writes"]) == (1, 0)


async def orders_under(cfg: Path, account: str) -> list[str]:
    listed = await call_cli("--config", cfg, "orders", "--json")
    assert listed.code == 0, listed.stderr
    return [o["order_id"] for o in json.loads(listed.stdout) if o["account"] == account]


async def test_a_removed_account_takes_no_order_but_one_that_settles_its_submit(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # An order that settles nothing was followed under `eu`, which nothing polls, with exit 0.
    port = free_port()
    cfg = await eu_renamed_with_an_uncertain_submit(tmp_path, fake, api_toml(port))
    for ref in ((), ("--ref", "shop-8")):
        track = ("track", "ccv", OTHER, *ref, "--account", "eu")
        refused = await call_cli("--config", cfg, *track)
        assert refused.code == 2, refused.stderr
        assert "no ccv account named 'eu' (asia)" in refused.stderr
    assert await orders_under(cfg, "eu") == []

    base = f"http://127.0.0.1:{port}/api/v1/orders"
    async with daemon_with_api(cfg, port) as http:
        for given in ({}, {"external_reference": "shop-8"}):
            document = {"source": "ccv", "order_id": OTHER, "account": "eu", **given}
            async with http.post(base, json=document) as r:
                body = await r.json()
                assert r.status == 422, body
                assert body["field"] == "account", body
        document = {**document, "order_id": ORDER, "external_reference": "shop-7"}
        async with http.post(base, json=document) as r:
            assert r.status == 201, await r.text()
    assert submission_state(tmp_path, "shop-7") == "resolved"
    assert await orders_under(cfg, "eu") == [ORDER]
