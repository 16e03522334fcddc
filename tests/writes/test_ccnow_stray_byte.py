"""A byte that is not UTF-8 in one order's line of a CCNow action's answer (an old CGI's
latin-1 `refusé`): the whole answer was taken as unreadable, so both discounts of a post were
uncertain though one was plainly taken, and every order of a ship batch was posted again. The
line holding the byte is its order's alone, as for a poll; the byte never reaches a log line or
an event as it came. Against a fake CCNow on 127.0.0.1, through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import read_events, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import A, B, ccnow, commands

REFUSED = f"{B} error_message Rabais refus\xe9\n".encode("latin-1")


@pytest.mark.parametrize(
    ("action", "args", "taken"),
    [("adjust", ["--amount", "1.00"], "pending"), ("ship", [], "mark_shipped")],
)
async def test_a_stray_byte_in_one_orders_line_settles_the_others_by_their_lines(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, args: list[str], taken: str
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.script = [Reply(200, f"{A} {taken}\n".encode() + REFUSED)]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, action, A, B, *args)
    assert result.code == 65, result.stdout + result.stderr
    # Its error line read as any order's: refused, in its words, the byte shown as U+FFFD.
    refused = "error_message Rabais refus\ufffd"
    assert commands(tmp_path) == [(A, "succeeded", taken), (B, "refused", refused)]
    assert fake_ccnow.batch_sizes == [2]  # posted once, not again
    events = [e for e in read_events(tmp_path) if e["type"].startswith("order.action")]
    assert [(e["type"], e["data"]["order_id"]) for e in events] == [
        ("order.action_succeeded", A),
        ("order.action_refused", B),
    ]
    assert events[1]["data"]["answer"] == refused
    for text in (result.stdout, result.stderr, (tmp_path / "events.jsonl").read_text()):
        assert "\udce9" not in text and "\\udce9" not in text and "\xe9" not in text
