"""A record is one line for every reader: the log lines and the JSONL sink's lines escape the
line ends JSON leaves as they are (U+2028, U+2029, U+0085), which str.splitlines() and many a
log shipper split on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from reconciler.events import Event
from reconciler.logs import render
from reconciler.model import EventType
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow, Reply

ENDS = "a\u2028b\u2029c\x85d"
ORDER = "396-10-1142"


async def test_a_reason_with_line_ends_is_one_line_in_the_log_and_the_jsonl_file(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A provider's error text becomes the reason of `source.failed`, in its event and its line.
    fake_ccnow.orders = {ORDER: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", ORDER)).code == 0
    fake_ccnow.always = Reply(body=f"error_message down {ENDS}\n")
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 75, result.stderr
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    reasons = [json.loads(x)["data"]["reason"] for x in lines]
    assert len(reasons) == 1 and ENDS in reasons[0]
    logged = [json.loads(x) for x in result.stderr.splitlines()]
    assert [x["reason"] for x in logged if x["message"] == "source.failed"] == reasons


def test_bodies_and_log_lines_escape_the_line_ends_and_read_back_the_same() -> None:
    data = {"status": ENDS, ENDS: [ENDS]}
    event = Event("e-1", EventType.STATUS_CHANGED, 0.0, "ccv", "default", ENDS, "info", data)
    body = event.body().decode()
    assert body.splitlines() == [body]
    assert json.loads(body) == event.cloudevent()
    line = render(0.0, logging.WARNING, "reconciler.test", "m", {"path": ENDS}, journal=False)
    assert line.splitlines() == [line]
    assert json.loads(line)["path"] == ENDS
