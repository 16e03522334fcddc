"""A CCNow action on an order the snapshot knows past pending is refused without asking CCNow,
and still recorded as DESIGN.md has every action: a command row (closed `refused`, with its
idempotency key, so the same request answers the same refusal), an id to follow and its
`order.action_refused`. `--dry-run` leaves such orders out of the posts it prints."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import call_cli, cli_env, daemon_here, free_port, read_events
from tests.fake_providers import FakeCCNow
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import A, B, ccnow, commands, daemon_with_api, tracked

WHY = "its last known status is completed, past pending; CCNow takes actions on pending orders only"


def actions_posted(fake: FakeCCNow) -> list[str]:
    """Every `x_action_N` but a status query that reached the fake CCNow."""
    return [
        v
        for r in fake.requests
        for k, v in r.form.items()
        if k.startswith("x_action_") and v != "query"
    ]


async def test_the_command_line_records_the_refusal_with_its_event(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "completed"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    asked = len(fake_ccnow.requests)
    first = await ccnow(cfg, "ship", A, "--key", "k1")
    assert first.code == 65, first.stderr
    assert first.stdout == f"{A} ship refused: {WHY} (command 1)\n"
    assert "refused 1" in first.stderr
    assert commands(tmp_path) == [(A, "refused", WHY)]
    # The same key answers the same refusal: no second command, no second event.
    again = await ccnow(cfg, "ship", A, "--key", "k1")
    assert again.code == 65
    assert again.stdout == f"{A} ship refused: {WHY} (command 1) (made before with this key)\n"
    assert commands(tmp_path) == [(A, "refused", WHY)]
    refused = [e for e in read_events(tmp_path) if e["type"] == "order.action_refused"]
    assert [(e["subject"], e["data"]["severity"]) for e in refused] == [(A, "warning")]
    data = refused[0]["data"]
    assert (data["command_id"], data["action"], data["answer"]) == (1, "ship", WHY)
    assert data["via"] == "action"
    assert len(fake_ccnow.requests) == asked  # CCNow was never asked


async def test_the_api_answers_a_refusal_with_an_id_to_follow(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "completed"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    port = free_port()
    cfg.write_text(cfg.read_text() + api_toml(port))
    api = f"http://127.0.0.1:{port}/api/v1"
    doc = {"order_id": A.replace("-", ""), "action": "ship", "idempotency_key": "k1"}
    async with daemon_with_api(cfg, port) as http:
        for made_before in (False, True):
            async with http.post(f"{api}/ccnow/actions", json=doc) as r:
                body = await r.json()
                assert r.status == 202, body
                assert (body["id"], body["state"], body["key"]) == (1, "refused", "k1")
                assert (body["outcome"], body["answer"]) == ("refused", WHY)
                assert body["made_before"] is made_before
        async with http.get(f"{api}/ccnow/actions/1") as r:
            assert r.status == 200
            assert ((await r.json())["state"], (await r.json())["answer"]) == ("refused", WHY)
        async with http.get(f"{api}/events", params={"type": "order.action_refused"}) as r:
            events = (await r.json())["events"]
        assert [(e["subject"], e["data"]["command_id"]) for e in events] == [(A, 1)]
    assert actions_posted(fake_ccnow) == []  # CCNow was asked for statuses only


async def test_a_dry_run_beside_a_daemon_leaves_out_what_the_real_run_refuses(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "completed", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    async with daemon_here(cfg):
        # The daemon holds the writer lock: the dry run reads the snapshot beside it.
        result = await call_cli("--config", cfg, "ccnow", "ship", A, B, "--dry-run", env=cli_env())
    assert result.code == 0, result.stderr
    assert f"x_orderid_1={B}" in result.stdout.splitlines()
    assert A not in result.stdout and "x_orderid_2" not in result.stdout
    assert f"reconciler: {A} ship left out: refused without asking CCNow: {WHY}\n" in (
        result.stderr
    )
    assert commands(tmp_path) == []
    assert actions_posted(fake_ccnow) == []


async def test_a_dry_run_of_orders_only_refused_prints_no_post(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "completed"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    result = await ccnow(cfg, "cancel", A, "--dry-run")
    assert (result.code, result.stdout) == (0, "")
    assert f"{A} cancel left out" in result.stderr
