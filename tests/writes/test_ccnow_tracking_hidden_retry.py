"""A tracking upload CCNow added behind a proxy's 503 without CCNow's words (`Backend fetch
failed`), whose retry within the same post CCNow refuses in its order's line (`order not
pending`: the order shipped meanwhile): CCNow may have it, and no status read can tell (the
Order Update API answers a query with the order's status word alone; an upload leaves it
`pending`). It is `uncertain` for a person, never `refused` (it was, exit 65), and never
uploaded again. Still refused: one refused by a line naming one of its own fields (the first
attempt carried the same field, refused the same way), and one whose earlier attempt was
turned away in words saying nothing ran (a 429, CCNow's own `down`) or never connected.
Against a fake CCNow on 127.0.0.1 that counts the posts."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from reconciler.config import load_config
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_actions import ActionSender, Tally, build
from tests.conftest import read_events, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply, cut_off
from tests.writes.test_ccnow_actions import ARGS, A, B, ccnow, commands, make_due, query
from tests.writes.test_ccnow_retry_finds_taken import VARNISH

# What a proxy before CCNow may answer after CCNow got the post and was slow.
HIDING = {
    "503-varnish": Reply(503, VARNISH, content_type="text/html"),
    "503-plain": Reply(503, "Service Unavailable"),
    "503-empty-retry-after": Reply(503, "", headers={"Retry-After": "0"}),
}
# Answers that say nothing ran: its retry is CCNow's first sight of it.
NOT_RUN = {
    "429": Reply(429, "Too Many Requests"),
    "503-ccnow-down": Reply(503, "error_message system down for maintenance\n"),
}
MAYBE = "an earlier attempt may have reached CCNow with it"


class ShippedMeanwhile(FakeCCNow):
    """CCNow, whose merchant marks an order shipped in the backroom right after a tracking
    upload to it is applied: the next post's action on it is refused `order not pending`."""

    def _act(self, n: int, order_id: str, form: Mapping[str, str]) -> str | None:
        said = super()._act(n, order_id, form)
        if said is None and form.get(f"x_action_{n}") == "track":
            self.orders[order_id] = "mark_shipped"
        return said


@pytest.fixture
async def shipped_meanwhile() -> AsyncIterator[ShippedMeanwhile]:
    fake = await ShippedMeanwhile().start()
    try:
        yield fake
    finally:
        await fake.close()


def uploads(fake: FakeCCNow) -> int:
    """The posts carrying a tracking upload (status queries left out)."""
    return len([r for r in fake.requests if r.form.get("x_action_1") == "track"])


@pytest.mark.parametrize("hiding", list(HIDING.values()), ids=list(HIDING))
async def test_a_tracking_upload_a_retry_finds_refused_is_uncertain_and_never_posted_again(
    tmp_path: Path, shipped_meanwhile: ShippedMeanwhile, hiding: Reply
) -> None:
    fake = shipped_meanwhile
    fake.orders = {A: "pending"}
    fake.after_applying = [hiding]  # CCNow added it; what stands before it answered so
    cfg = write_config(tmp_path, ccnow=fake)
    args = ("add-tracking", A, *ARGS["add-tracking"])
    first = await ccnow(cfg, *args)
    assert first.code == 75, first.stdout + first.stderr
    assert [(o, a) for o, a, _ in fake.actions] == [(A, "track")]  # CCNow has it
    assert uploads(fake) == 2  # the first attempt and the retry within the post
    assert commands(tmp_path) == [(A, "uncertain", f"error_message order not pending ({MAYBE})")]
    types = [e["type"] for e in read_events(tmp_path) if e["type"].startswith("order.action_")]
    assert types == ["order.action_uncertain"]
    # Neither the same line again nor a later run uploads it once more.
    await make_due(tmp_path)
    again = await ccnow(cfg, *args)
    assert again.code == 75, again.stdout + again.stderr
    assert uploads(fake) == 2
    assert query(tmp_path, "SELECT state FROM commands") == [("uncertain",)]


async def test_a_tracking_upload_a_cut_retry_refuses_in_its_whole_line_is_uncertain(
    tmp_path: Path, shipped_meanwhile: ShippedMeanwhile
) -> None:
    # The retry's answer is cut short after the first order's whole line: that line closes its
    # command as in a whole answer, by the same rule. The other, posted again at once (its
    # answer lost), is refused after a post that may have reached CCNow: uncertain too.
    fake = shipped_meanwhile
    fake.orders = {A: "pending", B: "pending"}
    cut = cut_off(f"{A} error_message order not pending\n{B} pen")
    fake.after_applying = [HIDING["503-varnish"], cut]
    cfg = write_config(tmp_path, ccnow=fake)
    result = await ccnow(cfg, "add-tracking", A, B, *ARGS["add-tracking"])
    assert result.code == 75, result.stdout + result.stderr
    assert commands(tmp_path) == [
        (A, "uncertain", f"error_message order not pending ({MAYBE})"),
        (B, "uncertain", f"error_message order not pending ({MAYBE})"),
    ]
    assert uploads(fake) == 3


async def test_a_tracking_upload_a_retry_refuses_by_its_own_field_is_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The retry's answer names the command's own field: the first attempt, which carried the
    # same field, was refused the same way.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [
        HIDING["503-varnish"],
        Reply(200, "error_message x_tracknumber_1 is not a tracking number\n"),
    ]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "add-tracking", A, *ARGS["add-tracking"])
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [
        (A, "refused", "error_message x_tracknumber_1 is not a tracking number")
    ]
    assert uploads(fake_ccnow) == 2


class FirstRefused(AbstractResolver):
    """Resolves CCNow's host to a loopback port bound but not listening first (the connection
    is refused: that attempt surely never left), then to the fake's."""

    def __init__(self, dead: int, live: int) -> None:
        self.ports = [dead, live]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        at = self.ports.pop(0) if len(self.ports) > 1 else self.ports[0]
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=at, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("not_run", list(NOT_RUN.values()), ids=list(NOT_RUN))
async def test_a_tracking_upload_refused_after_an_attempt_turned_away_is_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow, not_run: Reply
) -> None:
    fake_ccnow.orders = {A: "completed"}
    fake_ccnow.script = [not_run]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "add-tracking", A, *ARGS["add-tracking"])
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "refused", "error_message order not pending")]
    assert uploads(fake_ccnow) == 2


async def test_a_tracking_upload_refused_after_an_attempt_that_never_connected_is_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first attempt's connection is refused (nothing left); the retry is CCNow's first
    # sight of it, and its `order not pending` says it was not added.
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    fake_ccnow.orders = {A: "mark_shipped"}
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    live = URL(fake_ccnow.url)
    account = dataclasses.replace(config.ccnow[0], url=str(live.with_host("ccnow.test")))
    store = await Store.open(tmp_path / "reconciler.db")
    with contextlib.closing(socket.socket()) as dead:
        dead.bind(("127.0.0.1", 0))  # bound, never listening: a connection to it is refused
        resolver = FirstRefused(dead.getsockname()[1], live.port or 80)
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                sender = ActionSender(
                    store, session, Reconciler(config, store), [account], gates=Gates()
                )
                new = build(account, "add-tracking", [A], carrier="DHL", number="JD01")
                [(row, _)] = await cmds.record(store, new, 0.0)
                await sender.send([row], Tally())
            [closed] = await cmds.get(store, [row.id])
        finally:
            await store.close()
    assert resolver.ports == [live.port]  # both attempts made, the first refused
    assert (closed.state, closed.answer) == ("refused", "error_message order not pending")
    assert uploads(fake_ccnow) == 1
