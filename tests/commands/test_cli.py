"""The command line's contract: exit codes, one-line errors, read-only commands, filters."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli
from tests.conftest import (
    REPO,
    Result,
    call_cli,
    cli_env,
    daemon_here,
    poll_until,
    read_events,
    run_cli,
    write_config,
)
from tests.fake_providers import FakeCCNow, FakeCCV

ORDER = "3c2b1a00-0000-4000-8000-000000000001"
ORDER_2 = "3c2b1a00-0000-4000-8000-000000000002"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[ccv]\nbase_url = "https://x.example"\npoll_intervall = "5m"\n', "ccv.poll_intervall"),
        ('[ccv]\nbase_url = "https://x.example"\npoll_interval = "5x"\n', "ccv.poll_interval"),
        ('[ccv]\nbase_url = "http://ccv.example"\n', "ccv.base_url"),
        ('[ccv]\nbase_url = "https://x.example"\nconcurrency = "8"\n', "ccv.concurrency"),
        ('[ccnow]\nurl = "https://x.example"\n', "ccnow.client_id"),
        ("[store]\n", "ccv"),
        ("not toml at all [", "-"),
    ],
)
async def test_bad_config_exits_78_with_one_line_and_creates_nothing(
    tmp_path: Path, text: str, key: str
) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "db.sqlite"}"\n' + text.replace("[store]\n", ""))
    for command in (["catch-up"], ["run"], ["orders"], ["check"]):
        result = await call_cli("--config", cfg, *command)
        assert result.code == 78, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"config error: {cfg}: {key}:"), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reconciler.toml"]


def _comparable(result: Result) -> tuple[int, str, list[dict[str, Any]]]:
    """A run's exit code, stdout and log lines without what differs run by run (times, ids)."""
    lines = []
    for line in result.stderr.splitlines():
        record = json.loads(line.lstrip("<0123456789>"))
        lines.append(
            {**record, "time": "-", "event_id": "-", "event_time": "-", "prefix": line[:3]}
        )
    return result.code, result.stdout, lines


async def test_the_in_process_cli_says_what_the_process_says(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # call_cli stands in for the process in most tests: it must not drift from it. Warning
    # level: event lines still come, at info too.
    fake_ccv.orders = {ORDER: "Failed", ORDER_2: "New"}
    env = cli_env()
    runs = []
    for run, where in ((run_cli, tmp_path / "process"), (call_cli, tmp_path / "here")):
        where.mkdir()
        cfg = write_config(where, ccv=fake_ccv)
        assert (await call_cli("--config", cfg, "track", "ccv", ORDER, ORDER_2)).code == 0
        runs.append(await run("--log-level", "warning", "--config", cfg, "catch-up", env=env))
    process, here = map(_comparable, runs)
    assert process == here
    # And a usage error: argparse's exit code and text, as the process gives them.
    usage = [await run("--config", "x.toml", "frobnicate") for run in (run_cli, call_cli)]
    assert usage[0] == usage[1] and usage[0].code == 2 and "frobnicate" in usage[0].stderr
    assert process[0] == 0
    # At --log-level warning, only the event lines: the Failed order's at error, the other's
    # at info (events always reach the log).
    assert sorted((line["message"], line["level"]) for line in process[2]) == [
        ("order.discovered", "error"),
        ("order.discovered", "info"),
    ]


def test_a_command_line_run_in_a_longer_lived_process_leaves_its_logging_as_it_was(
    tmp_path: Path,
) -> None:
    # cli.run is the console script's body; a program (or test) calling it keeps its logging.
    loggers = [logging.getLogger(n) for n in ("reconciler", "reconciler.events", "aiohttp")]
    before = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    stream = io.StringIO()
    argv = ["--log-level", "debug", "--config", str(tmp_path / "reconciler.toml"), "orders"]
    assert cli.run(argv, log_stream=stream) == 78
    assert [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers] == before


async def test_missing_config_file_exits_78(tmp_path: Path) -> None:
    result = await call_cli("--config", tmp_path / "nope.toml", "orders")
    assert result.code == 78 and "nope.toml" in result.stderr


async def test_usage_errors_exit_2(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "frobnicate")).code == 2
    assert (await call_cli("--config", cfg, "track", "ccv")).code == 2  # no ids, no file
    assert (await call_cli("--config", cfg, "track", "ccv", "a", "b", "--ref", "R")).code == 2
    assert (await call_cli("--config", cfg, "events", "--since", "yesterday")).code == 2


async def test_read_commands_on_a_fresh_store_show_nothing(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    orders = await call_cli("--config", cfg, "orders", "--json")
    events = await call_cli("--config", cfg, "events", "--json")
    assert (orders.code, json.loads(orders.stdout)) == (0, [])
    assert (events.code, json.loads(events.stdout)) == (0, [])
    assert not (tmp_path / "reconciler.db").exists()  # reading creates nothing
    after = await call_cli("orders", "--config", cfg, "--json")  # options after the command too
    assert (after.code, json.loads(after.stdout)) == (0, [])


async def test_track_from_file_untrack_and_filters(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    fake_ccv.orders = {ORDER: "New", "other-1": "Completed"}
    fake_ccnow.orders = {"396-10-1142": "processing"}
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    ids = tmp_path / "ids.csv"
    ids.write_text(f"# orders of today\n{ORDER},INV-1\n\nother-1\n")
    assert (await call_cli("--config", cfg, "track", "ccv", "--from-file", ids)).code == 0
    piped = await call_cli(
        "--config", cfg, "track", "ccnow", "--from-file", "-", stdin=b"396101142\n"
    )
    assert piped.code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0

    rows = json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout)
    assert {(r["source"], r["order_id"], r["status"], r["external_reference"]) for r in rows} == {
        ("ccv", ORDER, "New", "INV-1"),
        ("ccv", "other-1", "Completed", None),
        ("ccnow", "396-10-1142", "processing", None),
    }
    done = json.loads(
        (await call_cli("--config", cfg, "orders", "--status", "Completed", "--json")).stdout
    )
    assert [r["order_id"] for r in done] == ["other-1"]
    table = await call_cli("--config", cfg, "orders", "--source", "ccnow")
    assert "396-10-1142" in table.stdout and ORDER not in table.stdout

    events = json.loads(
        (await call_cli("--config", cfg, "events", "--json", "--type", "order.discovered")).stdout
    )
    assert len(events) == 3
    later = json.loads(
        (
            await call_cli("--config", cfg, "events", "--json", "--since", "2999-01-01T00:00:00Z")
        ).stdout
    )
    assert later == []

    assert (await call_cli("--config", cfg, "untrack", "ccv", ORDER)).code == 0
    rows = json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout)
    assert ORDER not in {r["order_id"] for r in rows}
    assert len(read_events(tmp_path)) == 3  # history stays


async def test_orders_not_checked_yet_are_shown_due_since_they_were_tracked(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # Their stored first check is 0, "at once": `orders --json` showed 1970-01-01T00:00:00.000Z.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    before = time.time()
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    after = time.time()
    (row,) = json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout)
    assert row["last_checked"] is None
    due = datetime.fromisoformat(row["next_check_at"].replace("Z", "+00:00")).timestamp()
    assert before - 0.001 <= due <= after


async def test_check_online(tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    good = await call_cli("--config", cfg, "check", "--online")
    assert good.code == 0, good.stderr
    bad = await call_cli(
        "--config", cfg, "check", "--online", env=cli_env(RECONCILER_CCV_API_KEY="t_wrong-key-0000")
    )
    assert bad.code == 78 and "ccv/default" in bad.stderr
    await fake_ccnow.close()
    down = await call_cli("--config", cfg, "check", "--online")
    assert down.code == 75 and "ccnow/default" in down.stderr


async def test_unknown_status_word_is_kept_and_flagged(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.orders = {ORDER: "OnHoldForReview"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    await call_cli("--config", cfg, "track", "ccv", ORDER)
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    [event] = read_events(tmp_path)
    assert event["data"]["status"] == "OnHoldForReview"
    assert event["data"]["unknown_status"] is True
    assert event["data"]["severity"] == "warning"


async def _stderr_to_file(tmp_path: Path, journal: str | None, *args: str) -> list[str]:
    """Run the CLI as a process whose stderr is a file, as systemd connects the journal's
    stream; `journal` is JOURNAL_STREAM ("self": the file's own device:inode)."""
    path = tmp_path / f"stderr-{len(list(tmp_path.glob('stderr-*')))}"
    with path.open("wb") as err:
        found = os.fstat(err.fileno())
        extra = {} if journal is None else {"JOURNAL_STREAM": journal}
        if journal == "self":
            extra["JOURNAL_STREAM"] = f"{found.st_dev}:{found.st_ino}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reconciler", *args, stderr=err, env=cli_env(**extra), cwd=REPO
        )
        await asyncio.wait_for(proc.wait(), 60)
    return path.read_text().splitlines()


async def test_journald_priority_prefixes(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.orders = {ORDER: "Failed"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    await call_cli("--config", cfg, "track", "ccv", ORDER)
    lines = await _stderr_to_file(tmp_path, "self", "--config", str(cfg), "catch-up")
    event_lines = [line for line in lines if "order.discovered" in line]
    assert event_lines and event_lines[0].startswith('<3>{"time"')  # Failed is an error
    assert all(line.startswith(("<3>", "<4>", "<6>")) for line in lines), lines
    # The line that says why a command stopped is an error line too.
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nfrobnicate = 1\n")
    (line,) = await _stderr_to_file(tmp_path, "self", "--config", str(bad), "catch-up")
    assert line.startswith(f"<3>config error: {bad}: store.frobnicate")
    # Inherited by a shell or a redirect, the variable names another stream: plain lines.
    (line,) = await _stderr_to_file(tmp_path, "8:1234", "--config", str(bad), "catch-up")
    assert line.startswith("config error:")
    lines = await _stderr_to_file(tmp_path, "8:1234", "--config", str(cfg), "catch-up")
    assert lines and all(line.startswith("{") for line in lines), lines
    plain = await call_cli("--config", cfg, "events")
    assert ORDER[:8] in plain.stdout
    # The account is in every row: with several of a source, source.failed must say which.
    header, row = plain.stdout.splitlines()[:2]
    assert header.split()[:4] == ["TIME", "TYPE", "ACCOUNT", "ORDER"]
    assert row.split()[2:4] == ["ccv/default", ORDER]


async def test_unusable_store_is_one_line_and_exit_74(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    cfg = write_config(tmp_path, ccv=fake_ccv, extra="")
    cfg.write_text(
        cfg.read_text().replace(str(tmp_path / "reconciler.db"), str(blocker / "reconciler.db"))
    )
    for command in (["catch-up"], ["track", "ccv", ORDER]):
        result = await call_cli("--config", cfg, *command)
        assert result.code == 74, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    cfg.write_text(cfg.read_text().replace(str(blocker / "reconciler.db"), str(garbage)))
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 74 and "Traceback" not in result.stderr


async def test_track_file_drops_a_bom_and_refuses_invisible_characters_by_line(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    # Excel's "CSV UTF-8": a BOM in front of the first id, CRLF line ends.
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + f"{ORDER},INV-1\r\nother-1\r\n".encode())
    assert (await call_cli("--config", cfg, "track", "ccv", "--from-file", excel)).code == 0
    piped = await call_cli(
        "--config", cfg, "track", "ccnow", "--from-file", "-", stdin=b"\xef\xbb\xbf396101142\n"
    )
    assert piped.code == 0, piped.stderr
    rows = json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout)
    assert {(r["order_id"], r["external_reference"]) for r in rows} == {
        (ORDER, "INV-1"),
        ("other-1", None),
        ("396-10-1142", None),
    }

    for name, line in [
        ("zero-width.csv", "other-2\u200b"),
        ("bidi.csv", "\u202eother-2"),
        ("bom-inside.csv", "\ufeffother-2"),
        ("ref.csv", "other-2,INV\u200b-2"),
    ]:
        bad = tmp_path / name
        bad.write_text(f"other-3\n# comment\n{line}\n", encoding="utf-8")
        result = await call_cli("--config", cfg, "track", "ccv", "--from-file", bad)
        assert result.code == 65, (name, result.stderr)
        assert f"{bad}:3:" in result.stderr and "Traceback" not in result.stderr
    # Excel's plain "CSV" on Windows: cp1252, not UTF-8.
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"other-4\r\nother-5,Caf\xe9\r\n")
    result = await call_cli("--config", cfg, "track", "ccv", "--from-file", latin)
    assert result.code == 65, result.stderr
    assert (
        result.stderr.strip() == f'reconciler: error: {latin}:2: not UTF-8 (save it as "CSV UTF-8")'
    )
    rows = json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout)
    assert len(rows) == 3  # nothing of a refused file was tracked


async def test_track_file_is_read_as_csv_and_a_line_is_one_order(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    # As a spreadsheet saves it: quoted fields, a comma inside quotes, empty trailing columns;
    # white space around an id and after a comma (a reference's own is refused: test_track_given).
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        'Order No.,Reference\r\n"A2","ref2"\r\nA5,"x, y"\r\n  B1 , r1,,\r\n', encoding="utf-8"
    )
    assert (await call_cli("--config", cfg, "track", "ccv", "--from-file", sheet)).code == 0
    mac = tmp_path / "mac.csv"  # Excel's "CSV (Macintosh)": a lone CR ends each line
    mac.write_text("C1\rC2,ref-c2\r", encoding="utf-8")
    assert (await call_cli("--config", cfg, "track", "ccv", "--from-file", mac)).code == 0
    rows = json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout)
    assert {(r["order_id"], r["external_reference"]) for r in rows} == {
        ("A2", "ref2"),
        ("A5", "x, y"),
        ("B1", "r1"),
        ("C1", None),
        ("C2", "ref-c2"),
    }
    for name, line in [
        ("semicolon.csv", "S4;ref4"),  # Excel's list separator in many locales
        ("three.csv", "S6,ref6,extra"),
        ("form-feed.csv", "E3\fE4"),  # one line, not two orders
        ("line-separator.csv", "E1\u2028E2"),
    ]:
        bad = tmp_path / name
        bad.write_text(f"S1\n{line}\nS2\n", encoding="utf-8")
        result = await call_cli("--config", cfg, "track", "ccv", "--from-file", bad)
        assert result.code == 65, (name, result.stderr)
        assert f"{bad}:2:" in result.stderr and "Traceback" not in result.stderr
    rows = json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout)
    assert len(rows) == 5  # nothing of a refused file was tracked


async def test_track_takes_its_ids_after_its_options_too(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    ref = await call_cli("--config", cfg, "track", "ccv", "--ref", "R9", "X9")
    assert ref.code == 0, ref.stderr
    named = await call_cli("--config", cfg, "track", "ccnow", "--account", "default", "396101142")
    assert named.code == 0, named.stderr
    rows = json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout)
    assert {(r["order_id"], r["external_reference"]) for r in rows} >= {
        ("X9", "R9"),
        ("396-10-1142", None),
    }
    dashed = await call_cli("--config", cfg, "track", "ccv", "--ref", "R8", "--", "-X8")
    assert dashed.code == 0, dashed.stderr  # after `--`, an id may begin with "-"
    # An unknown option stays one, also when the same word comes again after `--`.
    doubled = await call_cli("--config", cfg, "track", "ccv", "--bogus", "--", "--bogus")
    assert doubled.code == 2 and "unrecognized arguments: --bogus" in doubled.stderr
    unknown = await call_cli("--config", cfg, "track", "ccv", "--bogus", "X1")
    assert unknown.code == 2 and "unrecognized arguments: --bogus" in unknown.stderr


@pytest.mark.parametrize(
    ("source", "order_id"),
    [
        ("ccnow", "１２３-４５-６７８９"),  # fullwidth digits
        ("ccnow", "٣٩٦١٠١١٤٢"),  # Arabic-Indic digits
        ("ccnow", "३९६१०११४२"),  # Devanagari digits
        ("ccv", "O-\u200b1"),
        ("ccv", "\ufeffO-1"),
        ("ccv", "O-1\u202e"),
        ("ccv", "Ö-1"),
    ],
)
async def test_ids_are_ascii(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow, source: str, order_id: str
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    result = await call_cli("--config", cfg, "track", source, order_id)
    assert result.code == 65, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "reconciler.db").exists()


async def test_argument_that_is_not_utf8_exits_65_naming_it(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    # Python hands undecodable argv bytes over as surrogates; fsdecode makes the same str.
    result = await call_cli("--config", cfg, "track", "ccv", os.fsdecode(b"O-\xff1"))
    assert result.code == 65, result.stderr
    assert result.stderr.strip() == r"reconciler: error: argument is not valid UTF-8: O-\xff1"
    assert not (tmp_path / "reconciler.db").exists()


async def test_notification_url_refuses_a_reference_the_receiver_would_refuse(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    receiver = (
        '[receiver]\npublic_url = "https://integrator.example/r"\nsecret = "s3cret-0123456789abc"\n'
    )
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=receiver)
    good = await call_cli("--config", cfg, "notification-url", "ccv", "--ref", "INV-1")
    assert good.code == 0 and good.stdout.startswith("https://integrator.example/r/notify/ccv/")
    for ref in ("", "INV\u200b-1", "R" * 257):
        result = await call_cli("--config", cfg, "notification-url", "ccv", "--ref", ref)
        assert (result.code, result.stdout) == (65, ""), result.stderr
        assert "--ref" in result.stderr and "Traceback" not in result.stderr
    empty = await call_cli("--config", cfg, "track", "ccv", "O-1", "--ref", "")
    assert empty.code == 65 and not (tmp_path / "reconciler.db").exists()
    # The same bound as the API's and CCV's answers': 256 characters.
    long = await call_cli("--config", cfg, "track", "ccv", "O-1", "--ref", "R" * 257)
    assert long.code == 65 and "256" in long.stderr and not (tmp_path / "reconciler.db").exists()


async def test_check_refuses_a_key_with_a_line_break(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    result = await call_cli(
        "--config", cfg, "check", env=cli_env(RECONCILER_CCV_API_KEY="t_key-0123\n")
    )
    assert result.code == 78
    assert result.stderr.strip() == (
        f"config error: {cfg}: ccv.api_key: must not contain a line break, control or "
        "invisible character (from env RECONCILER_CCV_API_KEY)"
    )


def _readable_warnings(result_or_text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line.lstrip("<0123456789>")) for line in result_or_text.splitlines()]
    return [line for line in lines if line["message"] == "config.secret_readable"]


async def test_check_and_run_warn_once_about_a_secret_others_can_read(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    key_file = tmp_path / "ccv.key"
    key_file.write_text("t_key-0123\n")
    # A secret in the config file itself: a webhook sink's.
    webhook = (
        '[[sinks]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/hook"\n'
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n'
    )
    cfg = write_config(tmp_path, ccv=fake_ccv, ccv_extra=f'api_key_file = "{key_file}"')
    cfg.write_text(cfg.read_text() + webhook)
    env = {k: v for k, v in cli_env().items() if k != "RECONCILER_CCV_API_KEY"}
    cfg.chmod(0o600)
    key_file.chmod(0o600)
    quiet = await call_cli("--config", cfg, "check", env=env)
    assert quiet.code == 0 and _readable_warnings(quiet.stderr) == []

    cfg.chmod(0o644)
    key_file.chmod(0o640)
    loud = await call_cli("--config", cfg, "check", env=env)
    assert loud.code == 0, loud.stderr
    warnings = _readable_warnings(loud.stderr)
    assert sorted((w["level"], w["file"], w["mode"]) for w in warnings) == [
        ("warning", str(key_file), "0640"),
        ("warning", str(cfg), "0644"),
    ]
    assert "t_key-0123" not in loud.stderr and "MfKQ9r8" not in loud.stderr

    log = tmp_path / "daemon.log"
    async with daemon_here(cfg, env) as run:
        await poll_until(lambda: "daemon.ready" in log.read_text(), 20, "daemon.ready")
        assert await run.stop() == 0
    warnings = _readable_warnings(log.read_text())
    assert sorted(w["file"] for w in warnings) == [str(key_file), str(cfg)]


@pytest.mark.parametrize("closed", [0, 1, 2])
def test_commands_run_with_a_standard_stream_closed(
    tmp_path: Path, fake_ccv: FakeCCV, closed: int
) -> None:
    # Cron jobs and daemonizers close descriptors: the event loop's epoll then took fd 2, the
    # log lines went into it, and libuv aborted the process (SIGABRT, exit 134).
    import subprocess

    cfg = write_config(tmp_path, ccv=fake_ccv)
    for args in (("track", "ccv", "O-1"), ("orders", "--json"), ("status",)):
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "--config", str(cfg), *args],
            env=cli_env(),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            preexec_fn=lambda: os.close(closed),
            timeout=60,
        )
        assert done.returncode == 0, (args, done.returncode, done.stderr[-500:])
        if closed != 1 and args[0] == "orders":
            assert json.loads(done.stdout)[0]["order_id"] == "O-1"


async def test_a_sink_removed_from_the_config_is_not_listed_as_waiting(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # `status` counts the configured sinks only; `events --undelivered` must agree with it.
    fake_ccv.orders = {"O-1": "New"}
    failing = json.dumps([sys.executable, "-c", "import sys; sys.exit(1)"])
    sink = f'[[sinks]]\ntype = "command"\nname = "hook"\ncommand = {failing}\nretry_min = "1h"\n'
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sink)
    assert (await call_cli("--config", cfg, "track", "ccv", "O-1", env=cli_env())).code == 0
    caught_up = await call_cli(
        "--config", cfg, "catch-up", "--deliver-timeout", "1s", env=cli_env()
    )
    assert caught_up.code == 75
    listed = await call_cli("--config", cfg, "events", "--undelivered", "--json", env=cli_env())
    assert [e["undelivered"] for e in json.loads(listed.stdout)] == [["hook"]]

    cfg = write_config(tmp_path, ccv=fake_ccv)  # the sink is gone
    listed = await call_cli("--config", cfg, "events", "--undelivered", "--json", env=cli_env())
    assert json.loads(listed.stdout) == []
    table = await call_cli("--config", cfg, "events", env=cli_env())
    assert "hook" not in table.stdout


def test_since_takes_rfc_3339_in_either_case() -> None:
    upper = cli.parse_args(["events", "--since", "2026-12-01T09:32:27.790Z"]).since
    assert cli.parse_args(["events", "--since", "2026-12-01t09:32:27.790z"]).since == upper
    assert (
        cli.parse_args(
            ["replay", "--sink", "log", "--since", "2026-12-01t10:32:27.790+01:00"]
        ).since
        == upper
    )


@pytest.mark.parametrize("speed", ["-1", "nan", "inf"])
def test_a_negative_sandbox_speed_is_a_usage_error(speed: str) -> None:
    # A negative speed froze the simulator without a word.
    for command in ("sandbox", "demo"):
        assert cli.run([command, "--speed", speed]) == 2


@pytest.mark.parametrize(
    "given",
    [
        "2026-12-01T09:32:27.79Z",
        "2026-12-01T09:32:27.790000999Z",  # nanoseconds: past microseconds cut
        "2026-12-01T10:32:27,79+0100",
        "2026-12-01T07:02:27.79-02:30",
        "20261201T093227.79Z",
        "20261201T113227.79+020000",  # an offset to the second
        "2026-12-01 09:32:27.79",  # UTC unless it names an offset
    ],
)
def test_since_takes_any_fraction_and_offset_on_every_python(given: str) -> None:
    # Python 3.10's fromisoformat refused all of these ("not an ISO 8601 time", exit 2); 3.11
    # reads them.
    assert cli.parse_args(["events", "--since", given]).since == pytest.approx(
        cli.parse_args(["events", "--since", "2026-12-01T09:32:27.790Z"]).since, abs=1e-6
    )


@pytest.mark.parametrize(
    "given",
    [
        "2026-13-01",
        "2026-12-01T25:00",
        "2026-12-01T09:32:27+24:00",
        "2026-12-01T9:32",
        "2026-1201T09:32",  # a dash left out in one place (3.11 refuses it)
        "2026-12-01T09:3227",
        "\u0662\u0660\u0662\u0666-12-01T09:32",  # digits of another script
    ],
)
def test_since_refuses_a_time_that_is_none(given: str) -> None:
    assert cli.run(["events", "--since", given]) == 2
