"""A CCNow action whose post was turned away (a 429: CCNow did not act on it) and whose retry
could not connect was sent all the same: withdrawn later, its words say so, not "before it was
sent", and `maybe_reached` stays false. Before, the retry's failed connection made the post one
never sent, and the 429 was forgotten."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow, Raw
from tests.writes.test_ccnow_actions import A
from tests.writes.test_ccnow_withdraw import REFUSED, states
from tests.writes.test_resolved_events import of_type

TOO_MANY = Raw(
    raw=b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
WORDS = (
    "withdrawn by hand before it was sent again: a post of it was turned away (HTTP 429), "
    "not acted on by CCNow"
)


class TurnsAwayThenGone(FakeCCNow):
    """CCNow answering the first action's post 429 and closing its connection, then taking no
    connection at all: the post's retry cannot connect."""

    def __init__(self) -> None:
        super().__init__()
        self.turned = False

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("x_action_1") is not None and not self.turned:
            self.turned = True
            await self.stop_listening()
            self.script = [TOO_MANY]
        return await super()._receive(request)


async def test_a_ship_turned_away_then_unreachable_is_withdrawn_as_sent_not_acted_on(
    tmp_path: Path,
) -> None:
    async with TurnsAwayThenGone() as fake:
        fake.orders = {A: "pending"}
        cfg = write_config(tmp_path, ccnow=fake)  # one retry, 10 ms after
        made = await call_cli("--config", cfg, "ccnow", "ship", A)
        assert made.code == 75, made.stdout + made.stderr
        assert (fake.turned, len(fake.requests), fake.actions) == (True, 1, [])
        assert [s[2] for s in states(tmp_path)] == ["queued"]

        done = await call_cli(
            "--config", cfg, "ccnow", "resolve", A, "--not-sent", "--action", "ship"
        )
    assert done.code == 0, done.stdout + done.stderr
    assert done.stdout == f"{A} ship (command 1): {WORDS}\n"
    assert states(tmp_path) == [(1, "ship", "refused", WORDS)]
    [event] = of_type(tmp_path, REFUSED)
    data = event["data"]
    assert (data["answer"], data["withdrawn"], data["maybe_reached"]) == (WORDS, True, False)
