"""`reconciler ccnow ship|cancel|add-tracking|adjust|resolve` (in-process; a process of its own
where a failpoint kills it) against a fake CCNow on 127.0.0.1: every action, batches, refusals
and failure answers, lost answers, idempotency keys, injection through notes, and SIGKILL in
each window of the send."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.daemon import Ticks
from reconciler.reconcile import Reconciler
from reconciler.sandbox import CCNOW_PATH, Sandbox, SandboxOptions
from reconciler.sinks import sink_names
from reconciler.sources.ccnow import MAX_BODY_BYTES
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_actions import ActionSender, Tally, build
from reconciler.writes.ccnow_outcome import UNREADABLE_LINE
from tests.conftest import (
    call_cli,
    cli_env,
    daemon_here,
    environ,
    free_port,
    poll_until,
    read_events,
    run_cli,
    write_config,
)
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply, cut_off, html_page
from tests.server.test_api import TOKEN, api_toml
from tests.writes.test_submit_crash import listening

A, B, C = "396-10-1142", "397-10-1159", "398-10-1160"
ARGS = {
    "ship": ["--notes", "On its way"],
    "cancel": ["--notes", "Out of stock"],
    "add-tracking": ["--carrier", "DHL", "--number", "JD0146 0000 1"],
    "adjust": ["--amount", "12.50", "--notes", "Late delivery"],
}
WORD = {"ship": "ship", "cancel": "cancel", "add-tracking": "track", "adjust": "adjust"}


def query(tmp_path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db", timeout=60)) as conn:
        return conn.execute(sql, params).fetchall()


async def make_due(tmp_path: Path) -> None:
    """Make the queued commands due now, as the time their next attempt waits for (30 s, a
    Retry-After) having passed: the same line again sends only those due. Off the event loop:
    a daemon run in this loop (`daemon_here`) may hold the writer's lock in a transaction that
    needs the loop to end, and a wait on the loop itself held both until the timeout."""
    await asyncio.to_thread(_make_due, tmp_path)


def _make_due(tmp_path: Path) -> None:
    now, db = time.time() - 1, tmp_path / "reconciler.db"
    if not db.exists():
        return  # nothing recorded yet
    # The daemon beside it may hold the writer's lock for seconds on a loaded machine: wait
    # for it as the daemon's own writes do, rather than sqlite3's default 5 s.
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as conn, conn:
        conn.execute(
            "UPDATE commands SET next_attempt_at = ? WHERE state = 'queued' "
            "AND next_attempt_at > ?",
            (now, now),
        )


def commands(tmp_path: Path) -> list[tuple[str, str, str | None]]:
    return query(tmp_path, "SELECT order_id, state, answer FROM commands ORDER BY id")


def no_password(tmp_path: Path, *outputs: str) -> None:
    for text in outputs:
        assert CCNOW_PASSWORD not in text
    assert CCNOW_PASSWORD.encode() not in (tmp_path / "reconciler.db").read_bytes()


async def ccnow(cfg: Path, *args: str, **env: str) -> Any:
    # A failpoint kills the process it is reached in: such a run needs a process of its own.
    run = run_cli if "RECONCILER_FAILPOINT" in env else call_cli
    return await run("--config", cfg, "ccnow", *args, env=cli_env(**env))


async def tracked(tmp_path: Path, fake: FakeCCNow, *ids: str) -> Path:
    """A config whose snapshot knows the orders as CCNow has them now."""
    cfg = write_config(tmp_path, ccnow=fake)
    assert (await call_cli("--config", cfg, "track", "ccnow", *ids)).code == 0
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    return cfg


@pytest.mark.parametrize("action", list(ARGS))
async def test_each_action_is_sent_with_its_fields_and_closed_by_the_answer(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    result = await ccnow(cfg, action, A, *ARGS[action])
    assert result.code == 0, result.stderr
    assert len(fake_ccnow.actions) == 1
    order_id, word, fields = fake_ccnow.actions[0]
    assert (order_id, word) == (A, WORD[action])
    expected = {
        "ship": {"x_notes": "On its way"},
        "cancel": {"x_notes": "Out of stock"},
        "add-tracking": {"x_trackname": "DHL", "x_tracknumber": "JD0146 0000 1"},
        "adjust": {"x_amount": "12.50", "x_notes": "Late delivery"},
    }[action]
    assert {k: v for k, v in fields.items() if k in expected} == expected
    assert "sent 1, done 1, refused 0, uncertain 0, queued 0" in result.stderr
    events = read_events(tmp_path)
    done = [e for e in events if e["type"] == "order.action_succeeded"]
    assert len(done) == 1
    assert done[0]["data"]["action"] == WORD[action]
    assert done[0]["data"]["command_id"] == 1
    after = {"ship": "mark_shipped", "cancel": "mark_canceled"}.get(action, "pending")
    assert done[0]["data"]["answer"] == after
    changes = [e["data"] for e in events if e["type"] == "order.status_changed"]
    if action in ("ship", "cancel"):
        assert [(c["previous_status"], c["status"], c["via"]) for c in changes] == [
            ("pending", after, "action")
        ]
    else:
        assert changes == []
    # A later poll finds what the action's answer already put in the snapshot: no new event.
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    assert len(read_events(tmp_path)) == len(events)
    no_password(tmp_path, result.stdout, result.stderr)


async def test_a_batch_is_one_post_and_each_order_ends_by_its_own_line(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "completed"}
    fake_ccnow.omit = {C}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "ship", A, B, C)
    assert result.code == 65
    # One post for the three; then the status of the one the answer left unsettled.
    assert fake_ccnow.batch_sizes == [3, 1]
    assert commands(tmp_path) == [
        (A, "succeeded", "mark_shipped"),
        (B, "refused", "error_message order not pending"),
        # Not answered for: queued for a later post (test_ccnow_unsettled.py).
        (C, "queued", "no single answer line for this order"),
    ]
    refused = [e["data"] for e in read_events(tmp_path) if e["type"] == "order.action_refused"]
    assert [(r["order_id"], r["answer"]) for r in refused] == [
        (B, "error_message order not pending"),
    ]
    assert "sent 3, done 1, refused 1, uncertain 0, queued 1" in result.stderr


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, "error_message system down for maintenance\n"),
        Reply(200, "error_message invalid login\n"),
        # Refused before anything ran: a rate limit, CCNow down, a login wall, a
        # wrong url. Made uncertain, every adjust would wait for a person. (A `message` CCNow
        # does not document may follow its running the post: test_ccnow_maybe_taken.py.)
        # (A 503 without CCNow's words makes an adjust uncertain: test_ccnow_maybe_taken.py.)
        Reply(429, "slow down"),
        Reply(503, "error_message system down for maintenance\n"),
        Reply(401, "no"),
        html_page(404),
    ],
    ids=["maintenance", "bad-login", "429", "503-ccnow-down", "401", "404"],
)
async def test_a_post_ccnow_refuses_as_a_whole_leaves_the_command_queued_and_a_later_run_sends_it(
    tmp_path: Path, fake_ccnow: FakeCCNow, reply: Reply
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.always = reply
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    first = await ccnow(cfg, "adjust", A, "--amount", "5")
    assert first.code == 75, first.stderr
    assert [s for _, s, _ in commands(tmp_path)] == ["queued"]
    assert not [e for e in read_events(tmp_path) if e["type"].startswith("order.action")]
    fake_ccnow.always = None
    await make_due(tmp_path)
    again = await ccnow(cfg, "adjust", A, "--amount", "5")
    assert again.code == 0, again.stderr
    assert "(made before with this key)" in again.stdout
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust")]
    no_password(tmp_path, first.stderr, again.stderr)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        # Cut mid-line, too large to be read, or not CCNow's answer at all (a gateway's page
        # or status, an empty body): CCNow may have applied the discount.
        (cut_off(f"{A} pend"), "truncated_answer"),
        # Framed by its Content-Length, its last line a documented word's start: lost too.
        (Reply(200, f"{A} pend"), "truncated_answer"),
        (Reply(200, f"{A} complete"), "truncated_answer"),
        (Reply(200, "x" * (MAX_BODY_BYTES + 1) + "\n"), "answer_too_large"),
        # Brotli, which aiohttp cannot decode here: CCNow (or a proxy) answered.
        (
            Reply(200, b"\x0b\x02\x80{}\x03", headers={"Content-Encoding": "br"}),
            "undecodable_answer",
        ),
        (html_page(504), "http_504"),
        (html_page(502), "http_502"),
        (Reply(500, "oops"), "http_500"),
        (html_page(), "unreadable_answer"),
        (Reply(200, ""), "unreadable_answer"),
        # A byte that is not UTF-8 in the order's status word: what CCNow said of it is
        # unknown (that line alone: the others' lines are read, test_ccnow_stray_byte.py).
        (Reply(200, f"{A} pend\xe9\n".encode("latin-1")), UNREADABLE_LINE),
        # A line for the order beside an error line: the discount may have been applied.
        (Reply(200, f"{A} pending\nerror_message daily limit reached\n"), "error_with_order_lines"),
        # ... or beside a `message` line of CCNow's (no error line): labelled as what came.
        (Reply(200, f"{A} pending\nmessage discount recorded\n"), "message_with_order_lines"),
    ],
    ids=[
        "cut",
        "framed-pend",
        "framed-complete",
        "too-large",
        "brotli",
        "gateway-504",
        "gateway-502",
        "http500",
        "html",
        "empty",
        "latin-1",
        "mixed",
        "mixed-message",
    ],
)
async def test_an_adjust_whose_answer_is_lost_is_never_sent_again(
    tmp_path: Path, fake_ccnow: FakeCCNow, reply: Reply, reason: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [reply]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    first = await ccnow(cfg, "adjust", A, "--amount", "7.25")
    assert first.code == 75
    assert len(fake_ccnow.requests) == 1  # no retry
    assert commands(tmp_path) == [(A, "uncertain", reason)]
    again = await ccnow(cfg, "adjust", A, "--amount", "7.25")
    assert again.code == 75
    assert len(fake_ccnow.requests) == 1
    # Another discount of the order, under a new key, waits for the person's word too.
    other = await ccnow(cfg, "adjust", A, "--amount", "2.00", "--key", "second")
    assert other.code == 65 and "is uncertain" in other.stdout + other.stderr
    assert len(fake_ccnow.requests) == 1
    uncertain = [e for e in read_events(tmp_path) if e["type"] == "order.action_uncertain"]
    assert len(uncertain) == 1
    assert uncertain[0]["data"]["action"] == "adjust"
    resolved = await ccnow(cfg, "resolve", A, "--sent")
    assert resolved.code == 0
    assert commands(tmp_path) == [(A, "sent", "resolved by hand: CCNow has it")]
    assert (await ccnow(cfg, "resolve", A, "--sent")).code == 65


@pytest.mark.parametrize(
    "reply", [cut_off(f"{A} mark_sh"), html_page(504)], ids=["cut", "gateway-504"]
)
async def test_a_ship_whose_answer_is_lost_is_sent_again(
    tmp_path: Path, fake_ccnow: FakeCCNow, reply: Reply
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [reply]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stderr
    assert len(fake_ccnow.requests) == 2
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped")]


async def test_the_same_key_twice_makes_one_command(tmp_path: Path, fake_ccnow: FakeCCNow) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "adjust", A, "--amount", "3", "--key", "refund-77")).code == 0
    again = await ccnow(cfg, "adjust", A, "--amount", "3", "--key", "refund-77")
    assert again.code == 0
    assert "(made before with this key)" in again.stdout
    assert len(fake_ccnow.actions) == 1
    # The key asking something else is refused (65), not answered with the first command.
    other = await ccnow(cfg, "ship", A, "--key", "refund-77")
    assert other.code == 65 and "was given to another command" in other.stderr, other.stderr
    assert len(fake_ccnow.actions) == 1
    # Without a key the same discount is the same command too; a new key makes a second one.
    assert (await ccnow(cfg, "adjust", A, "--amount", "3")).code == 0
    assert (await ccnow(cfg, "adjust", A, "--amount", "3")).code == 0
    assert len(fake_ccnow.actions) == 2


async def test_notes_cannot_add_form_fields(tmp_path: Path, fake_ccnow: FakeCCNow) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    notes = "Sorry&x_action_2=cancel&x_orderid_2=397-10-1159 = 100%"
    result = await ccnow(cfg, "ship", A, "--notes", notes)
    assert result.code == 0, result.stderr
    form = fake_ccnow.requests[-1].form
    assert form["x_notes_1"] == notes
    assert "x_action_2" not in form and "x_orderid_2" not in form
    assert fake_ccnow.orders[B] == "pending"


@pytest.mark.parametrize(
    "args",
    [
        ["ship", A, "--notes", "line one\nx_action_1=cancel"],
        ["ship", A, "--notes", "tab\there"],
        ["ship", A, "--notes", "x" * 501],
        ["adjust", A, "--amount", "0"],
        ["adjust", A, "--amount", "-1"],
        ["adjust", A, "--amount", "1.005"],
        ["adjust", A, "--amount", "100.01"],
        ["adjust", A, "--amount", "1e2"],
        ["adjust", A],
        ["add-tracking", A, "--carrier", "DHL"],
        ["ship", A, "--amount", "5"],
        ["ship", "12345"],
    ],
)
async def test_bad_input_is_refused_before_anything_is_recorded(
    tmp_path: Path, fake_ccnow: FakeCCNow, args: list[str]
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, *args)
    assert result.code == 65
    assert result.stderr.startswith("reconciler: error: ")
    assert "Traceback" not in result.stderr
    assert fake_ccnow.requests == []


async def test_max_adjust_is_per_account(tmp_path: Path, fake_ccnow: FakeCCNow) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra='max_adjust = "250.00"')
    assert (await ccnow(cfg, "adjust", A, "--amount", "250")).code == 0
    assert fake_ccnow.actions[0][2]["x_amount"] == "250.00"


async def test_an_order_past_pending_is_refused_without_asking(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "completed"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    asked = len(fake_ccnow.requests)
    result = await ccnow(cfg, "cancel", A)
    assert result.code == 65
    assert "last known status is completed, past pending" in result.stdout
    assert len(fake_ccnow.requests) == asked


async def test_dry_run_prints_the_form_and_sends_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(
        cfg, "add-tracking", A, B, "--carrier", "DHL", "--number", "7 & 8", "--dry-run"
    )
    assert result.code == 0
    assert result.stdout.splitlines()[1:] == [
        "x_clientid=amylove",
        "x_password=***",
        f"x_orderid_1={A}",
        "x_action_1=track",
        "x_trackname_1=DHL",
        "x_tracknumber_1=7+%26+8",
        f"x_orderid_2={B}",
        "x_action_2=track",
        "x_trackname_2=DHL",
        "x_tracknumber_2=7+%26+8",
    ]
    assert CCNOW_PASSWORD not in result.stdout + result.stderr
    assert fake_ccnow.requests == []
    assert not (tmp_path / "reconciler.db").exists()


async def test_dry_run_masks_a_secret_the_url_holds(tmp_path: Path, fake_ccnow: FakeCCNow) -> None:
    # The password put in the URL's query as well (some CGI gateways want it there) was printed.
    password = "Pw0rd-Zq9+&x=7%Se"
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    url = f"{fake_ccnow.url}?pw={quote_plus(password)}"
    cfg.write_text(cfg.read_text().replace(f'url = "{fake_ccnow.url}"', f'url = "{url}"'))
    result = await ccnow(
        cfg, "ship", A, "--notes", "On its way", "--dry-run", RECONCILER_CCNOW_PASSWORD=password
    )
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"POST {fake_ccnow.url}?pw=***"
    assert "x_notes_1=On+its+way" in result.stdout.splitlines()
    assert "Pw0rd" not in result.stdout + result.stderr
    assert fake_ccnow.requests == []


# Each kill costs a process: the windows times the three outcomes an action can have after
# one, not every action in every window. Recorded, nothing was sent, and any action is then
# sent once (the adjust: the only one a second post would double); sending and answered, an
# adjust waits for a person, a ship (as a cancel: CCNow no longer takes it for an order past
# pending) is sent again, taking once, and a tracking upload is sent again, taking twice once
# it was answered.
@pytest.mark.parametrize(
    ("point", "action"),
    [
        ("ccnow.recorded", "adjust"),
        ("ccnow.sending", "ship"),
        ("ccnow.sending", "adjust"),
        ("ccnow.answered", "ship"),
        ("ccnow.answered", "add-tracking"),
        ("ccnow.answered", "adjust"),
    ],
)
async def test_a_crash_in_any_window_never_doubles_an_adjust_nor_loses_a_command(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, point: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    crashed = await ccnow(cfg, action, A, *ARGS[action], RECONCILER_FAILPOINT=point)
    assert crashed.code == -9
    sent_before = len(fake_ccnow.actions)
    assert sent_before == (1 if point == "ccnow.answered" else 0)
    again = await ccnow(cfg, action, A, *ARGS[action])
    [(_, state, _)] = commands(tmp_path)
    if action == "adjust" and point != "ccnow.recorded":
        # Whether CCNow got it is unknown: it waits for a person, never sent again.
        assert (again.code, state) == (75, "uncertain")
        assert len(fake_ccnow.actions) == sent_before
        types = [e["type"] for e in read_events(tmp_path)]
        assert types.count("order.action_uncertain") == 1
    else:
        assert (again.code, state) == (0, "succeeded"), again.stdout + again.stderr
        taken = [a for _, a, _ in fake_ccnow.actions]
        # A ship or cancel that took before the crash is not applied twice by CCNow: the
        # order is no longer pending; a tracking upload is sent again.
        assert taken.count(WORD[action]) == (
            2 if (action == "add-tracking" and point == "ccnow.answered") else 1
        )


async def recorded_unsent(cfg: Path, action: str, order_id: str) -> None:
    """Leave a command as a process killed after recording it leaves it: queued, not sent."""
    with environ(cli_env()):
        config = load_config(cfg)
    store = await Store.open(config.store_path, sinks=sink_names(config))
    try:
        [(_, new)] = await cmds.record(store, build(config.ccnow[0], action, [order_id]), 1.0)
        assert new
    finally:
        await store.close()


async def test_through_a_running_daemon_and_its_queue(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    # A command recorded by a process that died before sending it (the crash itself is
    # test_a_crash_in_any_window_never_doubles_an_adjust_nor_loses_a_command's)...
    await recorded_unsent(cfg, "cancel", B)
    # The queue is read every 0.2 s, not 5 s: what is sent, not when, is the test's.
    async with daemon_here(cfg, ticks=Ticks(actions_s=0.2)):
        await listening(port)
        # ...is sent by the daemon's queue,
        await fake_ccnow.wait_until(lambda: fake_ccnow.orders[B] == "mark_canceled", 15)
        # and the command line hands its commands to the daemon, which holds the store.
        result = await ccnow(cfg, "ship", A, "--notes", "Thanks")
        assert result.code == 0, result.stderr
        assert f"{A} ship succeeded: mark_shipped (command 2)" in result.stdout
        again = await ccnow(cfg, "ship", A, "--notes", "Thanks")
        assert again.code == 0 and "(made before with this key)" in again.stdout
        headers = {"Authorization": f"Bearer {TOKEN}"}
        base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(f"{base}/1") as r:
                assert r.status == 200
                assert (await r.json())["state"] == "done"
            async with http.get(f"{base}/99") as r:
                assert r.status == 404
            bad = {"action": "adjust", "order_ids": [A], "amount": "1000"}
            async with http.post(base, json=bad) as r:
                assert r.status == 422
                assert (await r.json())["field"] == "amount"
            async with http.post(base, json={"action": "ship", "order_ids": [A]}) as r:
                body = await r.json()
                assert r.status == 202
                # Shipped a moment ago: refused here, not sent, and recorded as a command.
                assert body["commands"][0]["state"] == "refused"
                assert body["commands"][0]["id"] == 3
    assert [a for _, a, _ in fake_ccnow.actions] == ["cancel", "ship"]


# How long a test that waits for the daemon's start-up pass gives it (READY waits a little
# longer: its line then says the pass is over, not that its own bound ran out).
START_UP_PASS_S = 90.0


@contextlib.asynccontextmanager
async def daemon_with_api(
    cfg: Path, port: int, *, after_start_up: bool = False, ticks: Ticks | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    """Run the daemon on `cfg` until its API listens on `port`; give a client with the token.
    With `after_start_up`, not before its start-up pass is over (`daemon.ready`): on a loaded
    machine the pass's pending list can be read while the test's first action is in flight,
    and a line that may lag behind it is then queried, a request the test did not make.
    `ticks` as daemon_here takes them."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if after_start_up:
        ticks = dataclasses.replace(ticks or Ticks(), ready_s=START_UP_PASS_S + 30)
    async with (
        daemon_here(cfg, ticks=ticks) as run,
        aiohttp.ClientSession(headers=headers) as http,
    ):
        await listening(port)
        if after_start_up:
            log = cfg.parent / "daemon.log"
            await poll_until(
                lambda: "daemon.ready" in log.read_text() or run.task.done(),
                START_UP_PASS_S,
                "the daemon's start-up pass",
            )
        yield http


async def test_the_api_takes_the_action_body_design_md_names(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # `{"order_id", "action", "tracking_number"?, "idempotency_key"?, ...}`: 202 with the
    # command's state; the key makes a repeat the same command, never a second discount.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    adjust = {"order_id": A, "action": "adjust", "amount": "7.50", "idempotency_key": "K-42"}
    async with daemon_with_api(cfg, port) as http:
        for made_before in (False, True):
            async with http.post(base, json=adjust) as r:
                body = await r.json()
                assert r.status == 202, body
                assert (body["order_id"], body["state"], body["key"]) == (A, "done", "K-42")
                assert body["outcome"] == "succeeded"
                assert body["made_before"] is made_before
        async with http.get(f"{base}/{body['id']}") as r:
            assert (await r.json())["state"] == "done"
        track = {"order_id": B, "action": "add-tracking", "carrier": "DHL"}
        async with http.post(base, json={**track, "tracking_number": "JD01"}) as r:
            body = await r.json()
            assert r.status == 202, body
            assert (body["trackname"], body["tracknumber"]) == ("DHL", "JD01")
        refusals = [
            ({**adjust, "idempotency_key": 42}, "idempotency_key"),
            ({**adjust, "amount": "-1"}, "amount"),
            ({**adjust, "coupon": "X"}, "coupon"),
            ({**adjust, "keys": ["other"]}, "keys"),
            ({**adjust, "order_ids": [A]}, "order_id"),
            ({"order_id": "12", "action": "ship"}, "order_id"),
            ({"order_id": A, "action": "refund"}, "action"),
            ({"action": "ship"}, "order_id"),
            (track, "tracking_number"),
            ({**track, "tracking_number": "x" * 101}, "tracking_number"),
            ({"order_id": A, "action": "ship", "amount": "1"}, "amount"),
            # The key of the first adjust, asking something else: refused, not the old command
            # handed back as if this one were done.
            ({**adjust, "amount": "50.00"}, "idempotency_key"),
            ({"order_id": B, "action": "ship", "idempotency_key": "K-42"}, "idempotency_key"),
        ]
        for doc, field in refusals:
            async with http.post(base, json=doc) as r:
                body = await r.json()
                assert (r.status, body.get("field")) == (422, field), (doc, body)
    # One discount posted for the two requests; nothing for the refused ones.
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust"), (B, "track")]


async def test_against_the_sandbox_a_dropped_answer_makes_an_adjust_uncertain(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxOptions(orders=2, advance=False, faults="drop=1"))
    base = await sandbox.start("127.0.0.1", 0)
    try:
        a, b = sandbox.ccnow_order_ids()
        for order_id in (a, b):
            sandbox.set_status("ccnow", order_id, "pending")
        cfg = tmp_path / "reconciler.toml"
        cfg.write_text(
            f'[store]\npath = "{tmp_path / "reconciler.db"}"\n'
            f'[ccnow]\nurl = "{base}{CCNOW_PATH}"\nclient_id = "sandbox"\n'
            'timeout = "2s"\nretries = 1\nretry_backoff = "10ms"\n'
            f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "events.jsonl"}"\n'
        )
        env = {"RECONCILER_CCNOW_PASSWORD": "sandbox"}
        adjusted = await ccnow(cfg, "adjust", a, "--amount", "9.99", **env)
        assert adjusted.code == 75
        assert commands(tmp_path) == [(a, "uncertain", "connection")]
        # The sandbox did apply it; only the answer was lost.
        shipped = await ccnow(cfg, "ship", b, **env)
        # Re-sent after the lost answer; the order's status shows the first post took.
        assert shipped.code == 75  # every post of it is dropped: still queued for later
        sandbox.set_faults("")
        await make_due(tmp_path)
        again = await ccnow(cfg, "ship", b, **env)
        assert again.code == 0, again.stdout
        assert "taken by an earlier attempt" in again.stdout
        assert sandbox.status("ccnow", b) == "mark_shipped"
        assert (await ccnow(cfg, "adjust", a, "--amount", "9.99", **env)).code == 75
        types = [e["type"] for e in read_events(tmp_path)]
        assert types.count("order.action_uncertain") == 1
    finally:
        await sandbox.stop()


@pytest.mark.parametrize("value", ['"abc"', "0", '"1.234"', "true"])
async def test_a_bad_max_adjust_is_a_config_error(
    tmp_path: Path, fake_ccnow: FakeCCNow, value: str
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra=f"max_adjust = {value}")
    result = await call_cli("--config", cfg, "check", env=cli_env())
    assert result.code == 78
    assert "ccnow.max_adjust" in result.stderr


async def test_two_senders_in_one_process_post_a_queued_adjust_once(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon's tick and an API request may both find the same queued command.
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.delay_s = 0.2
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        async with aiohttp.ClientSession() as session:
            sender = ActionSender(
                store, session, Reconciler(config, store), config.ccnow, gates=Gates()
            )
            new = build(config.ccnow[0], "adjust", [A], amount="4")
            [(row, _)] = await cmds.record(store, new, 0.0)
            await asyncio.gather(sender.send([row], Tally()), sender.send([row], Tally()))
        assert len(fake_ccnow.requests) == 1
        assert [c.state for c in await cmds.get(store, [row.id])] == ["succeeded"]
    finally:
        await store.close()


def test_an_action_event_id_names_its_outcome_not_only_the_command_number() -> None:
    # A restored store numbers its commands again: command 5 may then ship another order.
    from reconciler.events import action_event

    def event_id(order_id: str, action: str, at: float) -> str:
        return action_event(
            "store", 5, "succeeded", account="a", order_id=order_id, action=action,
            answer="mark_shipped", time=at, before=None, after=None,
        ).id  # fmt: skip

    first = event_id("396-10-1142", "ship", 1000.0)
    assert first == event_id("396-10-1142", "ship", 1000.0)  # a redelivery keeps it
    assert first != event_id("397-10-1159", "ship", 1000.0)
    assert first != event_id("396-10-1142", "cancel", 1000.0)
    assert first != event_id("396-10-1142", "ship", 2000.0)


async def test_an_uncertain_adjust_is_resolved_while_the_daemon_runs(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Under systemd the daemon always holds the store: `ccnow resolve` hands the person's word
    # to it through the API, as the other ccnow commands do, instead of exit 75.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [cut_off(f"{A} pend")]
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    assert (await ccnow(cfg, "adjust", A, "--amount", "7.25")).code == 75
    assert commands(tmp_path) == [(A, "uncertain", "truncated_answer")]
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions/resolve"
    async with daemon_with_api(cfg, port) as http:
        for doc, status, field in [
            ({"order_id": A}, 422, "sent"),
            ({"order_id": A, "sent": "yes"}, 422, "sent"),
            ({"order_id": "12", "sent": True}, 422, "order_id"),
            ({"order_id": A, "sent": True, "why": "x"}, 422, "why"),
            ({"order_id": B, "sent": True}, 404, "order_id"),
        ]:
            async with http.post(base, json=doc) as r:
                assert (r.status, (await r.json()).get("field")) == (status, field), doc
        resolved = await ccnow(cfg, "resolve", A, "--sent")
        assert resolved.code == 0, resolved.stderr
        assert f"{A} adjust sent (command 1)" in resolved.stdout
        assert (await ccnow(cfg, "resolve", A, "--not-sent")).code == 65
    assert commands(tmp_path) == [(A, "sent", "resolved by hand: CCNow has it")]
    posted = [r.form["x_action_1"] for r in fake_ccnow.requests if "x_action_1" in r.form]
    assert posted == ["adjust"]  # never sent again


async def test_a_post_that_never_reached_ccnow_is_not_counted_as_sent(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    nobody = f"http://127.0.0.1:{free_port()}/cgi-local/oapi_receive.cgi"
    cfg.write_text(cfg.read_text().replace(fake_ccnow.url, nobody))
    result = await ccnow(cfg, "ship", A, B)
    assert result.code == 75, result.stdout + result.stderr
    # Connection refused: nothing went out, so the summary says so.
    assert "sent 0, done 0, refused 0, uncertain 0, queued 2" in result.stderr, result.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["queued", "queued"]
