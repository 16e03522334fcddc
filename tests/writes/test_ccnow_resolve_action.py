"""`ccnow resolve ID --sent|--not-sent --action A` (and the API's `"action"`) settles one
action's uncertain commands: an order may hold a ship and an adjust both uncertain, and the
backroom may show the ship taken and the discount not. Without `--action` such an order is
refused, nothing settled: one word for both would mark a discount never taken sent, or one
taken not sent (and a second discount could then be taken)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Result, call_cli, free_port, poll_until, write_config
from tests.fake_providers import FakeCCNow, Reply, cut_off
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import A, daemon_with_api, query
from tests.writes.test_ccnow_unsettled import days_ago
from tests.writes.test_resolved_events import ACTION_RESOLVED, of_type

DOWN = Reply(200, "error_message system down for maintenance\n")
NO_LINE = Reply(200, "message no_pending_orders\n", "text/plain")


async def ship_and_adjust_uncertain(tmp_path: Path, fake: FakeCCNow, extra: str = "") -> Path:
    """A config whose store holds an uncertain ship (#1: a day of answers without its order's
    line) and an uncertain adjust (#2: its answer cut off) of order A."""
    fake.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake, extra=extra)
    fake.script = [DOWN]
    assert (await ship(cfg)).code == 75
    await days_ago(tmp_path, "created_at")
    fake.replies_for[A] = NO_LINE
    assert (await ship(cfg)).code == 75
    await days_ago(tmp_path, "unsettled_since")
    assert (await ship(cfg)).code == 75
    fake.script = [cut_off(f"{A} pend")]
    adjust = await call_cli("--config", cfg, "ccnow", "adjust", A, "--amount", "7.25")
    assert adjust.code == 75, adjust.stdout + adjust.stderr
    assert states(tmp_path) == [(1, "ship", "uncertain"), (2, "adjust", "uncertain")]
    assert len(of_type(tmp_path, "order.action_uncertain")) == 2
    return cfg


async def ship(cfg: Path) -> Result:
    return await call_cli("--config", cfg, "ccnow", "ship", A)


def states(tmp_path: Path) -> list[tuple[int, str, str]]:
    rows = query(tmp_path, "SELECT id, action, state FROM commands ORDER BY id")
    return [(int(i), str(a), str(s)) for i, a, s in rows]


async def resolve(cfg: Path, *args: str) -> Result:
    return await call_cli("--config", cfg, "ccnow", "resolve", A, *args)


async def test_resolve_settles_one_action_and_refuses_an_order_of_several_without_action(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = await ship_and_adjust_uncertain(tmp_path, fake_ccnow)
    for flag in ("--sent", "--not-sent"):
        refused = await resolve(cfg, flag)
        assert refused.code == 65, refused.stdout + refused.stderr
        said = refused.stderr
        assert "ship (#1) and adjust (#2)" in said, said
        assert "--action ship" in said and "--action adjust" in said, said
        assert refused.stdout == ""
    assert states(tmp_path) == [(1, "ship", "uncertain"), (2, "adjust", "uncertain")]
    assert of_type(tmp_path, ACTION_RESOLVED) == []
    # A new discount is refused, the advice naming the action its resolve needs.
    second = await call_cli("--config", cfg, "ccnow", "adjust", A, "--amount", "5", "--key", "m")
    assert second.code == 65
    advice = f"`reconciler ccnow resolve {A} --sent|--not-sent --action adjust` first"
    assert advice in second.stdout + second.stderr, second.stdout + second.stderr
    status = await call_cli("--config", cfg, "status")
    assert "`--action ACTION` for an order with uncertain actions of several kinds" in (
        status.stdout
    ), status.stdout

    # An action with nothing uncertain names those that are.
    none = await resolve(cfg, "--sent", "--action", "cancel")
    assert none.code == 65
    assert "no uncertain cancel action" in none.stderr, none.stderr
    assert "ship (#1) and adjust (#2)" in none.stderr

    done = await resolve(cfg, "--sent", "--action", "ship")
    assert done.code == 0, done.stderr
    assert done.stdout == f"{A} ship sent (command 1)\n"
    assert states(tmp_path) == [(1, "ship", "sent"), (2, "adjust", "uncertain")]
    events = of_type(tmp_path, ACTION_RESOLVED)
    assert [(e["data"]["action"], e["data"]["command_id"]) for e in events] == [("ship", 1)]

    # The discount is still uncertain: a new one is refused, no second discount taken.
    posts = len(fake_ccnow.actions)
    again = await call_cli("--config", cfg, "ccnow", "adjust", A, "--amount", "5", "--key", "n")
    assert again.code == 65, again.stdout + again.stderr
    said = again.stdout + again.stderr
    assert f"(#2) is uncertain: settle it with `reconciler ccnow resolve {A} " in said
    # Always named: the order's uncertain actions may be of two kinds again.
    assert "--sent|--not-sent --action adjust` first" in said, said
    assert len(fake_ccnow.actions) == posts

    # One action left: a resolve without --action settles it, as before.
    last = await resolve(cfg, "--not-sent")
    assert last.code == 0, last.stderr
    assert states(tmp_path) == [(1, "ship", "sent"), (2, "adjust", "not_sent")]
    assert len(of_type(tmp_path, ACTION_RESOLVED)) == 2


async def test_the_api_and_resolve_through_the_daemon_settle_one_action(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    port = free_port()
    cfg = await ship_and_adjust_uncertain(tmp_path, fake_ccnow, extra=api_toml(port))
    url = f"http://127.0.0.1:{port}/api/v1/ccnow/actions/resolve"
    async with daemon_with_api(cfg, port) as http:
        async with http.post(url, json={"order_id": A, "sent": True}) as r:
            body = await r.json()
            assert r.status == 409, body
        assert body["uncertain"] == [{"id": 1, "action": "ship"}, {"id": 2, "action": "adjust"}]
        assert '"action": "ship"' in body["error"] and body["field"] == "action"
        async with http.post(url, json={"order_id": A, "sent": True, "action": "cancel"}) as r:
            body = await r.json()
            assert r.status == 404, body
            assert "no uncertain cancel action" in body["error"]
        async with http.post(url, json={"order_id": A, "sent": True, "action": "refund"}) as r:
            assert r.status == 422
        async with http.post(url, json={"order_id": A, "sent": True, "action": ["x"]}) as r:
            assert r.status == 422
        # The command line posts to the daemon holding the store: the same refusal, its words.
        refused = await resolve(cfg, "--not-sent")
        assert refused.code == 65, refused.stderr
        assert "--action ship" in refused.stderr, refused.stderr
        assert states(tmp_path) == [(1, "ship", "uncertain"), (2, "adjust", "uncertain")]
        async with http.post(url, json={"order_id": A, "sent": True, "action": "ship"}) as r:
            body = await r.json()
            assert r.status == 200, body
        assert [(c["id"], c["action"]) for c in body["commands"]] == [(1, "ship")]
        await poll_until(lambda: of_type(tmp_path, ACTION_RESOLVED), 60, "the event delivered")
        done = await resolve(cfg, "--not-sent", "--action", "adjust")
        assert done.code == 0, done.stderr
    assert states(tmp_path) == [(1, "ship", "sent"), (2, "adjust", "not_sent")]
    events = of_type(tmp_path, ACTION_RESOLVED)
    assert [(e["data"]["action"], e["data"]["resolved"]) for e in events] == [
        ("ship", "sent"),
        ("adjust", "not_sent"),
    ]
