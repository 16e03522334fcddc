"""Provider text kept in the store (a status, a `source.failed` reason) is printed by the text
outputs with its control characters escaped: a provider cannot drive the operator's terminal."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
import sys
import unicodedata
from pathlib import Path
from types import FrameType

import pytest

from reconciler import cli
from reconciler.terminal import shown, width
from tests.conftest import call_cli, write_config
from tests.fake_providers import CCV_KEY, FakeCCNow, FakeCCV, Reply

HOSTILE = "down\x1b[2J\x1b]0;pwned\x07 \u202eevil\u202c end"
ESCAPED = "down\\x1b[2J\\x1b]0;pwned\\x07 \\u202eevil\\u202c end"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HOSTILE, ESCAPED),
        ("CSI \x9b31m, DEL \x7f, NUL \x00, tab\t", "CSI \\x9b31m, DEL \\x7f, NUL \\x00, tab\\x09"),
        (
            "line\u2028paragraph\u2029isolate\u2066\u2069",
            "line\\u2028paragraph\\u2029isolate\\u2066\\u2069",
        ),
        ("Versandt – été 日本 🙂", "Versandt – été 日本 🙂"),  # printable text is left alone
    ],
)
def test_shown_escapes_what_could_drive_a_terminal(text: str, expected: str) -> None:
    assert shown(text) == expected


async def test_status_events_and_orders_print_provider_text_escaped(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.always = Reply(200, f"error_message {HOSTILE}\n")
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", "396-10-1142")).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 75
    # A status kept by an older release, or by a provider rule that lets more through.
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        conn.execute("UPDATE orders SET status = ?", (f"shipped{HOSTILE}",))
    conn.close()

    # In this process: what is asked is the text each command prints; that a process prints
    # it through its own stdout is asked of `ccnow ship` below.
    stored = json.loads((await call_cli("--config", cfg, "events", "--json")).stdout)
    assert HOSTILE in stored[-1]["data"]["reason"]  # kept as it came
    for command in ("events", "status", "orders"):
        result = await call_cli("--config", cfg, command)
        assert result.code == 0, result.stderr
        assert ESCAPED in result.stdout, command
        assert "\x1b" not in result.stdout and "\u202e" not in result.stdout, command


async def test_a_ccnow_actions_answer_is_printed_escaped(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    order = "396-10-1142"
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [Reply(200, f"{order} error_message {HOSTILE}\n")]
    result = await call_cli("--config", cfg, "ccnow", "ship", order, "--notes", "On its way")
    assert result.code == 65, result.stderr
    assert ESCAPED in result.stdout
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout


# Two cells a character (an emoji, CJK), and combining marks, which take none.
WIDE = ["😀😀 emoji", "処理中", "Processing", "e\u0301te\u0301"]


def next_column(line: str, text: str) -> int:
    """Return the terminal cell at which the column after `text` begins on a table's line."""
    end = line.index(text) + len(text)
    return width(line[: end + len(line[end:]) - len(line[end:].lstrip(" "))])


async def test_status_and_orders_columns_line_up_with_wide_text(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"ORD-{n}" for n in range(len(WIDE))]
    fake_ccv.orders = dict(zip(ids, WIDE, strict=True))
    cfg = write_config(tmp_path, ccv=fake_ccv)
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    assert (await call_cli("--config", cfg, "track", "ccv", *ids)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    assert (width("😀処"), width("e\u0301"), width("a\u200bb")) == (4, 1, 2)
    for command, head, column in (
        ("status", "ACCOUNT      STATUS", "ORDERS"),
        ("orders", "SOURCE", "EXTERNAL_REFERENCE"),
    ):
        result = await call_cli("--config", cfg, command)
        assert result.code == 0, result.stderr
        lines = result.stdout.splitlines()
        (header,) = [line for line in lines if line.startswith(head)]
        starts = {next_column(line, s) for s in WIDE for line in lines if s in line}
        # The column after the status begins where its heading does, on every row.
        assert starts == {next_column(header, "STATUS")}, (command, result.stdout)
        assert header.index(column) == next_column(header, "STATUS")


def _run_counting_lookups(*argv: str | Path) -> tuple[int, str, int]:
    """Run a command line in this thread; return its exit code, its output and how many times
    it looked a character up in the Unicode database (a cost no machine's load changes)."""
    lookups = 0

    def profile(_frame: FrameType, event: str, arg: object) -> None:
        nonlocal lookups
        lookups += event == "c_call" and getattr(arg, "__self__", None) is unicodedata

    out = io.StringIO()
    sys.setprofile(profile)
    try:
        with contextlib.redirect_stdout(out):
            code = cli.run([str(a) for a in argv])
    finally:
        sys.setprofile(None)
    return code, out.getvalue(), lookups


async def test_tables_of_ascii_text_look_up_no_character(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lookup per character of every cell: `orders` or `events` over 100,000 rows took seconds
    # more, though ASCII text is one cell a character.
    ids = [f"ORD-{n}" for n in range(200)]
    fake_ccv.orders = {**dict.fromkeys(ids, "Processing"), "ORD-WIDE": "処理中"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    assert (await call_cli("--config", cfg, "track", "ccv", *fake_ccv.orders)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    for command, rows in (("orders", 201), ("events", 201), ("status", 2)):
        code, out, lookups = await asyncio.to_thread(
            _run_counting_lookups, "--config", cfg, command
        )
        assert code == 0
        assert "Processing" in out and "処理中" in out
        assert len(out.splitlines()) > rows
        # The CJK status's characters only, once each time its cell is measured (twice).
        assert lookups <= 2 * len("処理中"), (command, lookups)
