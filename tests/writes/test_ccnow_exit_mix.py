"""The exit code of a `ccnow` run whose commands ended differently: refused wins (65: a person
must look, and running the line again reports it refused again), then anything left to do
later (75: queued, sending, uncertain), else 0. A run exiting 65 with commands still to do
says so on stderr: a script taking 65 as final would not know that a queued one waits for the
daemon or the next `ccnow` line."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from reconciler.commands.ccnow_actions import exit_code
from reconciler.writes.ccnow_actions import Tally
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import A, B, ccnow, commands, make_due

KINDS = ("done", "refused", "queued", "sending", "uncertain")


@pytest.mark.parametrize(
    "mix",
    [m for n in range(len(KINDS) + 1) for m in itertools.combinations(KINDS, n)],
    ids=lambda m: "+".join(m) or "none",
)
def test_refused_wins_then_anything_left_to_do(mix: tuple[str, ...]) -> None:
    tally = Tally()
    for kind in mix:
        setattr(tally, kind, 1)
    if "refused" in mix:
        expected = 65
    elif {"queued", "sending", "uncertain"} & set(mix):
        expected = 75
    else:
        expected = 0
    assert exit_code(tally) == expected


async def test_a_run_with_one_refused_and_one_queued_exits_65_and_says_what_waits(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The probe's answer: A past pending (refused), B's line saying CCNow is down (queued).
    fake_ccnow.orders = {A: "completed", B: "pending"}
    fake_ccnow.script = [
        Reply(
            200,
            f"{A} error_message order not pending\n{B} error_message system down for maintenance\n",
        )
    ]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    first = await ccnow(cfg, "ship", A, B)
    assert first.code == 65, first.stderr
    assert [(o, s) for o, s, _ in commands(tmp_path)] == [(A, "refused"), (B, "queued")]
    assert "refused 1, uncertain 0, queued 1" in first.stderr
    assert (
        "reconciler: warning: ccnow ship: 1 command still to do (queued 1): the running "
        "daemon or the next `reconciler ccnow` line sends a queued one; exit 65 is for the refused"
        in first.stderr
    ), first.stderr
    # The next line sends it (here the same line: the refused one is reported, not re-sent).
    await make_due(tmp_path)
    again = await ccnow(cfg, "ship", A, B)
    assert again.code == 65, again.stderr
    assert [(o, s) for o, s, _ in commands(tmp_path)] == [(A, "refused"), (B, "succeeded")]
    assert "still to do" not in again.stderr
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(B, "ship")]


async def test_help_says_which_exit_wins() -> None:
    result = await call_cli("ccnow", "ship", "--help")
    assert result.code == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "65 bad input, or one refused (also when others are queued, sending or uncertain" in said
    assert "75 none refused, one queued" in said
