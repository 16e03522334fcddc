"""Review 30a's findings on CCNow order actions' answers: a not-run status whose body carries
an order's line the action's reader takes for that order's (`ID: pending`, a no-break space),
and a chunked answer's last line cut after a blank. Each answer is sent by a fake on
127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import A, ccnow, commands


@pytest.mark.parametrize(
    "line",
    [
        f"{A}: pending\n".encode(),
        f"{A}\xa0pending\n".encode("latin-1"),
        f"{A}\xa0pending\n".encode(),
    ],
    ids=["colon", "latin-1-nbsp", "utf-8-nbsp"],
)
async def test_a_429_whose_body_is_an_order_s_odd_line_never_sends_a_discount_twice(
    tmp_path: Path, fake_ccnow: FakeCCNow, line: bytes
) -> None:
    # The reader of an action's answer takes such a line for its order's (CCNow ran the post),
    # the not-run check did not: the discount stayed queued (`http 429`) and was posted again.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.after_applying = [Reply(429, line)]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    first = await ccnow(cfg, "adjust", A, "--amount", "1.00")
    assert first.code == 75, first.stdout + first.stderr
    assert commands(tmp_path) == [(A, "uncertain", "http_429")]
    again = await ccnow(cfg, "adjust", A, "--amount", "1.00")
    assert again.code == 75, again.stdout + again.stderr
    assert len(fake_ccnow.actions) == 1 and len(fake_ccnow.requests) == 1


@pytest.mark.parametrize(
    ("action", "args", "blank", "state"),
    [
        ("adjust", ("--amount", "1.00"), " ", "uncertain"),
        ("adjust", ("--amount", "1.00"), "\t", "uncertain"),
        ("add-tracking", ("--carrier", "DHL", "--number", "JD0146"), " ", "queued"),
    ],
)
async def test_a_chunked_last_line_cut_after_a_blank_settles_no_command(
    tmp_path: Path,
    fake_ccnow: FakeCCNow,
    action: str,
    args: tuple[str, ...],
    blank: str,
    state: str,
) -> None:
    # `pending review` cut to `pending `, its chunks ended cleanly: taken for `pending`, the
    # discount was reported taken (succeeded), which the whole `pending review` does not say.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.after_applying = [Reply(200, f"{A} pending{blank}", chunked=True)]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, action, A, *args)
    assert result.code == 75, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, state, "no single answer line for this order")]
