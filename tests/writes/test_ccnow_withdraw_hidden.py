"""A ship turned away once (a 429: CCNow did not act on it), then posted again and answered a
proxy's 503 (`Backend fetch failed`, which may come after CCNow shipped it), is queued again
keeping nothing for its order's status to read (a ship's status tells). Withdrawn then, nothing
reads that status: its words say a post of it may have reached CCNow, and `maybe_reached` is
true. Before, the first post's 429 was kept and the withdrawal said CCNow had not acted on it.
Against a fake CCNow on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import ARGS, A, ccnow, make_due, query
from tests.writes.test_ccnow_retry_finds_taken import VARNISH
from tests.writes.test_ccnow_withdraw import REFUSED, states
from tests.writes.test_resolved_events import of_type

LONG = {"Retry-After": "7200"}  # longer than a retry within a post waits: queued at once
WORDS = (
    "withdrawn by hand before it was sent; an earlier post of it may have reached CCNow "
    "(its answer was lost, or may hide that CCNow ran it): look for it in CCNow's backroom"
)


async def test_a_ship_turned_away_then_hidden_by_a_proxy_503_is_withdrawn_as_maybe_reached(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(429, "Too Many Requests", headers=LONG)]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "ship", A, *ARGS["ship"])).code == 75
    assert query(tmp_path, "SELECT turned_away FROM commands") == [("HTTP 429",)]
    await make_due(tmp_path)
    fake_ccnow.script = [Reply(503, VARNISH, content_type="text/html", headers=LONG)]
    assert (await ccnow(cfg, "ship", A, *ARGS["ship"])).code == 75
    # Queued again, keeping no `maybe_reached_at`: a ship sent again is settled by its status.
    assert query(tmp_path, "SELECT state, maybe_reached_at, turned_away FROM commands") == [
        ("queued", None, None)
    ]

    done = await call_cli("--config", cfg, "ccnow", "resolve", A, "--not-sent", "--action", "ship")
    assert done.code == 0, done.stdout + done.stderr
    assert done.stdout == f"{A} ship (command 1): {WORDS}\n"
    assert states(tmp_path) == [(1, "ship", "refused", WORDS)]
    [event] = of_type(tmp_path, REFUSED)
    data = event["data"]
    assert (data["answer"], data["withdrawn"], data["maybe_reached"]) == (WORDS, True, True)
