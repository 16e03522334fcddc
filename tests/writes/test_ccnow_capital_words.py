"""An adjust CCNow answers with its order's line `pending ERROR` (or `pending FAIL`, `pending
NO`): the capital word may say the discount failed, or that it took; read as `pending`, the
command was `succeeded`. It is a status CCNow does not document, so the command is `uncertain`,
never sent again. Each answer comes from a fake on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_providers import FakeCCNow
from tests.writes.test_ccnow_actions import A, ccnow, commands, tracked
from tests.writes.test_ccnow_commands_one_at_a_time import action_events


@pytest.mark.parametrize("word", ["ERROR", "FAIL", "NO"])
async def test_an_adjust_answered_pending_and_a_capital_word_is_uncertain(
    tmp_path: Path, fake_ccnow: FakeCCNow, word: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} pending {word}"]
    run = await ccnow(cfg, "adjust", A, "--amount", "3.00")
    assert run.code == 75, run.stdout + run.stderr
    words = f"answered 'pending {word}', a status CCNow does not document"
    assert commands(tmp_path) == [(A, "uncertain", words)]
    assert action_events(tmp_path) == ["order.action_uncertain"]
    again = await ccnow(cfg, "adjust", A, "--amount", "3.00", "--key", "second")
    assert again.code == 65, again.stdout + again.stderr
    assert len(fake_ccnow.actions) == 1
