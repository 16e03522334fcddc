"""A rest the running daemon's CCNow action was asked (its close's status read turned away by a
429 asking ten minutes) is recorded in the store at once, through the seam a pass records one
by (poller/rests.record_rest): `status`, which reads the store, says until when the account
rests as /healthz does, not only after the account's next pass (an hour away here). Health
follows the account's events: no pass failed it, so it reads as it did, on both (README
"Retry-After of a read")."""

from __future__ import annotations

from pathlib import Path

from reconciler.daemon import Ticks
from tests.commands.test_status_rest import status
from tests.conftest import call_cli, daemon_here, free_port, poll_until, write_config
from tests.fake_providers import FakeCCNow
from tests.server.test_api import api_toml
from tests.server.test_rest_seen import ENV, SLOW, A, B, seen, too_many
from tests.writes.test_ccnow_actions import START_UP_PASS_S, query
from tests.writes.test_submit_crash import listening


async def test_a_rest_the_daemons_action_was_asked_is_recorded_at_once(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    api_port, port = free_port(), free_port()
    cfg = write_config(
        tmp_path, ccnow=fake_ccnow, ccnow_extra=SLOW, extra=api_toml(api_port, receiver_port=port)
    )
    assert (await call_cli("--config", cfg, "track", "ccnow", A, B, env=ENV)).code == 0
    log = tmp_path / "daemon.log"
    async with daemon_here(cfg, ENV, ticks=Ticks(ready_s=START_UP_PASS_S + 30)) as run:
        await listening(api_port)
        # Its start-up pass over: its query of A and B is not the one CCNow turns away.
        await poll_until(
            lambda: "daemon.ready" in log.read_text() or run.task.done(),
            START_UP_PASS_S,
            "the daemon's start-up pass",
        )
        # The ship's answer says nothing of B: its close reads B back, and CCNow turns that away.
        fake_ccnow.actions_answer = ["message no_pending_orders"]
        fake_ccnow.reads = [too_many(600)]
        await call_cli("--config", cfg, "ccnow", "ship", B, env=ENV)
        forms = [seen.form for seen in fake_ccnow.requests]
        assert [form.get("x_action_1", "query") for form in forms[-2:]] == ["ship", "query"]
        [(until, failing)] = query(tmp_path, "SELECT rest_until, failing FROM sources")
        entries, _ = await seen(port)
        accounts, text = await status(cfg, call_cli)
        said = log.read_text().count('"source.resting"')
    assert until is not None and not failing, "not recorded while the daemon runs"
    health, entry = entries[("ccnow", "default")], accounts[("ccnow", "default")]
    assert entry["resting_until"] == health["resting_until"] is not None, (entry, health)
    assert f"ccnow/default  {health['resting_until']}" in text, text
    # No pass met the rest: health as the account's events left it (the start-up pass: ok).
    assert (entry["health"], health["failing"]) == ("ok", False), (entry, health)
    assert query(tmp_path, "SELECT count(*) FROM events WHERE type = 'source.failed'") == [(0,)]
    # Said once, when recorded; not again at the stop.
    assert said == 1 and log.read_text().count('"source.resting"') == 1, log.read_text()
