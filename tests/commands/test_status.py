"""`reconciler status [--json]`: health of accounts, orders by status, sinks, the store; read-only,
so it works beside a running daemon."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from reconciler.json_text import iso_time
from tests.conftest import call_cli, cli_env, daemon_here, free_port, read_events, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import FakeCCNow, FakeCCV, Reply
from tests.notify_socket import NotifySocket
from tests.server.test_api import api_toml
from tests.tty import ANSI, call_cli_on_tty

CCV_IDS = [f"5a6b7c8d-0000-4000-8000-00000000000{n}" for n in range(1, 4)]


async def test_status_shows_accounts_orders_sinks_and_the_store(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    fake_ccv.orders = {CCV_IDS[0]: "New", CCV_IDS[1]: "New", CCV_IDS[2]: "FulfillmentDone"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    fresh = await call_cli("--config", cfg, "status", "--json")
    assert fresh.code == 0, fresh.stderr
    assert json.loads(fresh.stdout)["store"]["exists"] is False
    assert not (tmp_path / "reconciler.db").exists()  # status never creates the store

    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    # CCNow refuses the password: that account fails, CCV answers.
    caught = await call_cli(
        "--config", cfg, "catch-up", env=cli_env(RECONCILER_CCNOW_PASSWORD="wrong")
    )
    assert caught.code == 75
    failed_at = next(e["time"] for e in read_events(tmp_path) if e["type"] == "source.failed")
    # One event stays pending for the jsonl sink, one is dead-lettered.
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        conn.execute(
            "UPDATE deliveries SET state = 'pending' WHERE sink = 'jsonl' AND event_seq = 1"
        )
        conn.execute("UPDATE deliveries SET state = 'dead' WHERE sink = 'jsonl' AND event_seq = 2")
    conn.close()

    result = await call_cli("--config", cfg, "status", "--json")
    assert result.code == 0, result.stderr
    status = json.loads(result.stdout)
    ccv, ccnow = status["accounts"]
    assert (ccv["source"], ccv["account"], ccv["health"]) == ("ccv", "default", "ok")
    assert ccv["last_success"] is not None and ccv["failing_since"] is None
    assert ccv["followed"] == 3 and ccv["due"] == 0
    assert ccv["orders"] == [
        {"status": "FulfillmentDone", "count": 1},
        {"status": "New", "count": 2},
    ]
    assert (ccnow["source"], ccnow["health"]) == ("ccnow", "failing")
    assert ccnow["failing_since"] == failed_at
    assert ccnow["last_error"]
    assert status["sinks"] == [
        {
            "name": "log",
            "backlog": 0,
            "dead": 0,
            "disabled": None,
            "disabled_since": None,
            "configured": True,
            "gone_since": None,
            "let_go_at": None,
        },
        {
            "name": "jsonl",
            "backlog": 1,
            "dead": 1,
            "disabled": None,
            "disabled_since": None,
            "configured": True,
            "gone_since": None,
            "let_go_at": None,
        },
    ]
    store = status["store"]
    assert store["path"] == str(tmp_path / "reconciler.db") and store["exists"] is True
    assert store["size_bytes"] > 0 and store["free_bytes"] > 0
    assert store["last_failure"] is None

    text = await call_cli("--config", cfg, "status")
    assert text.code == 0
    lines = text.stdout.splitlines()
    head = next(line for line in lines if line.startswith("ACCOUNT") and "HEALTH" in line)
    row = next(line for line in lines if line.startswith("ccnow/default"))
    assert row.index("failing") == head.index("HEALTH")  # aligned columns
    assert row.index(failed_at[:19]) == head.index("FAILING SINCE")
    assert any(line.split() == ["jsonl", "1", "1", "-"] for line in lines)
    assert any(line.split()[:2] == ["path", str(tmp_path / "reconciler.db")] for line in lines)


async def test_status_works_while_the_daemon_runs(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    with NotifySocket.at_path(tmp_path / "notify.sock") as sock:
        async with daemon_here(cfg, cli_env(**sock.env())):
            await sock.wait_for_async("READY", "1", timeout_s=20)
            result = await call_cli("--config", cfg, "status", "--json")
    assert result.code == 0, result.stderr
    status = json.loads(result.stdout)
    (ccv,) = status["accounts"]
    assert ccv["followed"] == 3
    assert status["last_pass"]["outcome"] == "ok"  # the start-up catch-up, or a pass since


def _db(tmp_path: Path, *statements: str) -> None:
    """Give the store a shape that takes days to reach in real life."""
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        for sql in statements:
            conn.execute(sql)
    conn.close()


async def _status(cfg: Path) -> dict[str, Any]:
    result = await call_cli("--config", cfg, "status", "--json")
    assert result.code == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


async def test_status_of_a_store_with_no_orders_and_no_pass(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    missing = await _status(cfg)
    assert missing["last_pass"] is None
    assert missing["accounts"][0]["stuck"] == 0 and missing["accounts"][0]["due"] == 0
    # `untrack` of nothing makes an empty store.
    assert (await call_cli("--config", cfg, "untrack", "ccv", CCV_IDS[0])).code == 0
    assert (await call_cli("--config", cfg, "track", "ccv", CCV_IDS[0])).code == 0
    assert (await call_cli("--config", cfg, "untrack", "ccv", CCV_IDS[0])).code == 0
    empty = await _status(cfg)
    assert empty["store"]["exists"] is True and empty["last_pass"] is None
    (ccv,) = empty["accounts"]
    assert (ccv["health"], ccv["followed"], ccv["due"], ccv["stuck"]) == ("unknown", 0, 0, 0)
    assert ccv["orders"] == []
    text = await call_cli("--config", cfg, "status")
    assert text.code == 0
    assert "\x1b[" not in text.stdout  # no terminal: no colour
    assert any(
        line.split() == ["name", "none", "finished", "yet"] for line in text.stdout.splitlines()
    )


async def test_status_shows_due_stuck_the_last_pass_and_a_disabled_sink(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    # Only CCV is configured now; the store remembers a CCNow account of an earlier config.
    cfg = write_config(tmp_path, ccv=fake_ccv, extra='[alerts.stuck_after.ccv]\nNew = "1h"\n')
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    before = await _status(cfg)
    assert before["accounts"][0]["due"] == 3  # tracked, not checked yet
    caught = await call_cli("--config", cfg, "catch-up")
    assert caught.code == 0, caught.stderr
    _db(
        tmp_path,
        "INSERT INTO sources (source, account, failing) VALUES ('ccnow', 'old', 1)",
        "UPDATE orders SET stuck_version = version, last_changed = last_changed - 7200 "
        f"WHERE order_id = '{CCV_IDS[0]}'",
        "INSERT INTO sinks (name, disabled_at, reason) VALUES ('jsonl', 1, 'HTTP 410 Gone')",
    )
    status = await _status(cfg)
    (ccv,) = status["accounts"]  # configured accounts only
    assert (ccv["health"], ccv["due"], ccv["stuck"], ccv["followed"]) == ("ok", 0, 1, 3)
    assert status["sinks"][1] == {
        "name": "jsonl",
        "backlog": 0,
        "dead": 0,
        "disabled": "HTTP 410 Gone",
        "disabled_since": "1970-01-01T00:00:01.000Z",
        "configured": True,
        "gone_since": None,
        "let_go_at": None,
    }
    last = status["last_pass"]
    assert (last["name"], last["outcome"], last["checked"], last["failed"]) == (
        "catch-up",
        "ok",
        3,
        0,
    )
    assert last["events"] == 3 and last["failing"] == [] and last["seconds"] >= 0
    assert last["started"] <= last["finished"] <= status["time"]

    # A failing pass is recorded as one.
    failed = await call_cli(
        "--config", cfg, "catch-up", env=cli_env(RECONCILER_CCV_API_KEY="wrong")
    )
    assert failed.code == 75
    last = (await _status(cfg))["last_pass"]
    assert (last["outcome"], last["failing"]) == ("failed", ["ccv/default"])

    text = await call_cli("--config", cfg, "status")
    lines = text.stdout.splitlines()
    head = next(line for line in lines if line.startswith("ACCOUNT") and "STUCK" in line)
    row = next(line for line in lines if line.startswith("ccv/default"))
    assert row[head.index("STUCK") :].split()[0] == "1"
    assert any(line.split() == ["outcome", "failed"] for line in lines)
    # The source.failed event waits for the disabled sink.
    assert any(
        line.split()
        == ["jsonl", "1", "0", "HTTP", "410", "Gone", "since", "1970-01-01T00:00:01.000Z"]
        for line in lines
    )


def _steady(text: str) -> str:
    """The text without the disk's free space, which other writers change from run to run."""
    return "\n".join(line for line in text.strip().splitlines() if line.split()[:1] != ["free"])


async def test_status_is_coloured_on_a_terminal_unless_no_color(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    plain = _steady((await call_cli("--config", cfg, "status")).stdout)

    tty = await call_cli_on_tty("--config", cfg, "status", env=cli_env(), tty="stdout")
    assert tty.code == 0, tty.stderr
    assert "\x1b[32mok\x1b[0m" in tty.stdout  # a healthy account in green
    # Without the colour codes it is the same text, columns where they were.
    assert _steady(ANSI.sub("", tty.stdout)) == plain

    no_color = await call_cli_on_tty(
        "--config", cfg, "status", env=cli_env(NO_COLOR="1"), tty="stdout"
    )
    assert "\x1b[" not in no_color.stdout
    assert _steady(no_color.stdout) == plain


async def test_status_counts_the_orders_whose_last_check_failed(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS[1:], "New")
    # The first order never answers: checked, but no status seen yet.
    fake_ccv.replies[CCV_IDS[0]] = Reply(403, '{"message": "Forbidden"}', "application/json")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 75
    (ccv,) = (await _status(cfg))["accounts"]
    assert ccv["health"] == "ok" and ccv["check_failed"] == 1
    assert ccv["orders"] == [{"status": None, "count": 1}, {"status": "New", "count": 2}]

    text = await call_cli("--config", cfg, "status")
    lines = text.stdout.splitlines()
    head = next(line for line in lines if line.startswith("ACCOUNT") and "HEALTH" in line)
    row = next(line for line in lines if line.startswith("ccv/default") and " ok " in line)
    assert row[head.index("CHECK FAILED") :].split()[0] == "1"
    assert any(line.split() == ["ccv/default", "(no", "status", "yet)", "1"] for line in lines)

    # Once it answers, it no longer counts.
    del fake_ccv.replies[CCV_IDS[0]]
    fake_ccv.orders[CCV_IDS[0]] = "New"
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    assert (await _status(cfg))["accounts"][0]["check_failed"] == 0


async def test_a_status_word_that_reads_as_the_placeholder_is_quoted(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # Before, two identical `ccv/default  (no status yet)  1` rows: which one was CCV's word?
    fake_ccv.orders = {CCV_IDS[1]: "(no status yet)", CCV_IDS[2]: '"(no status yet)"'}
    fake_ccv.replies[CCV_IDS[0]] = Reply(403, '{"message": "Forbidden"}', "application/json")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 75
    (ccv,) = (await _status(cfg))["accounts"]
    assert ccv["orders"] == [
        {"status": None, "count": 1},
        {"status": '"(no status yet)"', "count": 1},
        {"status": "(no status yet)", "count": 1},
    ]
    text = await call_cli("--config", cfg, "status")
    rows = [" ".join(line.split()[1:]) for line in text.stdout.splitlines() if "yet" in line]
    assert rows == ["(no status yet) 1", '""(no status yet)"" 1', '"(no status yet)" 1']


def test_an_unconfigured_account_is_red_only_while_it_has_open_orders(tmp_path: Path) -> None:
    # With every order ended nothing needs doing (README): no alarm colour for it.
    from reconciler.commands.status_report import AccountStatus, Status, StoreStatus
    from reconciler.commands.status_text import render_text

    def account(name: str, orders: tuple[tuple[str | None, int], ...]) -> AccountStatus:
        return AccountStatus(
            "ccnow", name, "not_configured", None, None, None, orders, 0, 0, 0, configured=False
        )

    store = StoreStatus(tmp_path / "r.db", True, 0, 0, None)
    ended = render_text(
        Status(0.0, (account("old", (("canceled", 3),)),), (), store, None), colour=True
    )
    open_ = render_text(
        Status(0.0, (account("eu", (("pending", 1),)),), (), store, None), colour=True
    )
    red = "\x1b[31m"
    assert red + "not configured" in open_
    assert red + "not configured" not in ended and "not configured" in ended


async def test_failing_since_stays_where_the_failure_began_when_retention_prunes(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    # An outage longer than `keep_events`: its source.failed is old enough to be pruned, but
    # FAILING SINCE must not move forward with every failed attempt.
    fake_ccv.orders = {CCV_IDS[0]: "New"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    cfg.write_text(cfg.read_text().replace("[store]\n", '[store]\nkeep_events = "1h"\n', 1))
    wrong = cli_env(RECONCILER_CCNOW_PASSWORD="wrong")
    assert (await call_cli("--config", cfg, "catch-up", env=wrong)).code == 75
    # Two hours pass: every event so far is older than the window (and delivered).
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        conn.execute("UPDATE events SET time = time - 7200")
        (began,) = conn.execute("SELECT time FROM events WHERE type = 'source.failed'").fetchone()
    conn.close()
    # CCNow still refuses; the new order's event is newer, and this catch-up prunes.
    assert (await call_cli("--config", cfg, "track", "ccv", CCV_IDS[0])).code == 0
    assert (await call_cli("--config", cfg, "catch-up", env=wrong)).code == 75
    result = await call_cli("--config", cfg, "status", "--json")
    assert result.code == 0, result.stderr
    ccnow = json.loads(result.stdout)["accounts"][1]
    assert (ccnow["health"], ccnow["failing_since"]) == ("failing", iso_time(began))
    text = (await call_cli("--config", cfg, "status")).stdout
    row = next(line for line in text.splitlines() if line.startswith("ccnow/default"))
    assert iso_time(began)[:19] in row
    # Kept: the failure's start; the rest of the old history went.
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        types = [t for (t,) in conn.execute("SELECT type FROM events ORDER BY seq")]
    conn.close()
    assert types == ["source.failed", "order.discovered"]

    # Once it recovers, its source.failed is history like any other event.
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        types = [t for (t,) in conn.execute("SELECT type FROM events ORDER BY seq")]
    conn.close()
    assert "source.failed" not in types


async def test_retention_lets_go_of_the_failure_of_an_account_no_longer_configured(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    # The CCNow account fails, then leaves the config while failing: nothing asks it any more,
    # `status` shows no failing_since for it, and its source.failed is history like any other.
    fake_ccv.orders = {CCV_IDS[0]: "New"}
    keep = '[store]\nkeep_events = "1h"\n'
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    cfg.write_text(cfg.read_text().replace("[store]\n", keep, 1))
    wrong = cli_env(RECONCILER_CCNOW_PASSWORD="wrong")
    assert (await call_cli("--config", cfg, "track", "ccnow", "396-10-1142")).code == 0
    assert (await call_cli("--config", cfg, "catch-up", env=wrong)).code == 75
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        conn.execute("UPDATE events SET time = time - 7200")  # two hours ago, delivered
    conn.close()

    cfg = write_config(tmp_path, ccv=fake_ccv)  # [ccnow] removed
    cfg.write_text(cfg.read_text().replace("[store]\n", keep, 1))
    assert (await call_cli("--config", cfg, "track", "ccv", CCV_IDS[0])).code == 0
    # The first finds the whole history older than the window (as under a clock far ahead): it
    # prunes nothing; the second finds the first's event, and prunes.
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    result = await call_cli("--config", cfg, "status", "--json")
    (ccnow,) = [a for a in json.loads(result.stdout)["accounts"] if a["source"] == "ccnow"]
    assert (ccnow["health"], ccnow["failing_since"]) == ("not_configured", None)
    events = json.loads((await call_cli("--config", cfg, "events", "--json")).stdout)
    assert [e["type"] for e in events] == ["order.discovered"]


async def test_status_names_the_writes_waiting_for_a_person_and_what_settles_them(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Answers lost (500s): a CCV submit and a CCNow adjust become uncertain, a ship is queued
    # again. Plain `status` must say so, with what to run, not only `--json`.
    a, b = "396-10-1142", "396-10-1143"
    fake_ccnow.orders = {a: "pending", b: "pending"}
    async with FakeCCVWrites() as ccv:
        cfg = write_config(tmp_path, ccv=ccv, ccnow=fake_ccnow, extra=api_toml(free_port()))
        assert (await call_cli("--config", cfg, "catch-up")).code == 0
        fake_ccnow.always = Reply(500, "oops")
        ccv.submit_replies = [Reply(500, "Server error")]
        for action in (["adjust", a, "--amount", "3.00"], ["ship", b]):
            assert (await call_cli("--config", cfg, "ccnow", *action)).code == 75
        body = json.dumps(submit_body(externalReference="shop-7")).encode()
        assert (await call_cli("--config", cfg, "ccv", "submit", "-", stdin=body)).code == 75

    result = await call_cli("--config", cfg, "status")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    head = next(line for line in lines if line.startswith("WRITES"))
    assert head.split()[:5] == ["WRITES", "UNCERTAIN", "SENDING", "QUEUED", "TO"]
    ccv_row = next(line for line in lines if line.startswith("ccv/default") and "--ref" in line)
    assert ccv_row.split()[1:4] == ["1", "0", "0"]
    assert "(shop-7)" in ccv_row and "`reconciler track ccv ID --ref REF`" in ccv_row
    ccnow_row = next(line for line in lines if line.startswith("ccnow/") and "resolve" in line)
    assert ccnow_row.split()[1:4] == ["1", "0", "1"]
    assert f"({a})" in ccnow_row
    assert "`reconciler ccnow resolve ID --sent|--not-sent`" in ccnow_row
    assert "queued: the daemon sends them" in ccnow_row


async def test_orders_and_events_quote_a_status_word_that_reads_as_their_placeholder(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # `orders` and `events` print a missing status as `-`: a CCV status `-` read the same.
    fake_ccv.orders = {CCV_IDS[1]: "-", CCV_IDS[2]: "New"}
    fake_ccv.replies[CCV_IDS[0]] = Reply(403, '{"message": "Forbidden"}', "application/json")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 75
    orders = (await call_cli("--config", cfg, "orders")).stdout.splitlines()
    status = {line.split()[2]: line.split()[3] for line in orders[1:]}
    assert status == {CCV_IDS[0]: "-", CCV_IDS[1]: '"-"', CCV_IDS[2]: "New"}
    fake_ccv.orders[CCV_IDS[1]] = "New"
    fake_ccv.orders[CCV_IDS[2]] = "-"
    assert (await call_cli("--config", cfg, "catch-up")).code == 75
    events = (await call_cli("--config", cfg, "events")).stdout.splitlines()
    changes = [" ".join(line.split()[4:-2]) for line in events if "status_changed" in line]
    assert changes == ['"-" -> New', 'New -> "-"'], events
    # A word holding the arrow would read as two changes.
    fake_ccv.orders[CCV_IDS[1]] = "A -> B"
    assert (await call_cli("--config", cfg, "catch-up")).code == 75
    events = (await call_cli("--config", cfg, "events")).stdout.splitlines()
    changes = [" ".join(line.split()[4:-2]) for line in events if "status_changed" in line]
    assert changes[-1] == 'New -> "A -> B"', events
