"""Review 30b's findings on CCNow order actions: `--dry-run` beside older commands of an order
(one due, one made before and still queued, an adjust behind an uncertain one) and the resolve
a refused second discount advises. Each answer is sent by a fake on 127.0.0.1."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import A, ccnow, commands, make_due
from tests.writes.test_ccnow_resolve_action import ship_and_adjust_uncertain


def execute(tmp_path: Path, *statements: str) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        for sql in statements:
            conn.execute(sql)
        conn.commit()


def posted(stdout: str) -> list[str]:
    """The orders and actions of a dry run's posts, post by post."""
    return [
        " ".join(line.split("=", 1)[1] for line in post.splitlines() if "_1=" in line)
        for post in stdout.split("\n\n")
        if post.strip()
    ]


async def queued_adjust(tmp_path: Path, fake_ccnow: FakeCCNow) -> Path:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(200, "error_message Database error\n")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "adjust", A, "--amount", "1.00")).code == 75
    assert commands(tmp_path) == [(A, "queued", "error_message Database error")]
    return cfg


async def test_a_dry_run_sends_a_due_older_command_first_as_the_real_run_does(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The dry run left the ship out ("waits for #1 (adjust)") and exited 75, where the real
    # run sent the adjust, due, then the ship, and exited 0.
    cfg = await queued_adjust(tmp_path, fake_ccnow)
    execute(tmp_path, "UPDATE commands SET next_attempt_at = 0")
    dry = await ccnow(cfg, "ship", A, "--dry-run")
    assert dry.code == 0, dry.stdout + dry.stderr
    assert "left out" not in dry.stderr
    assert posted(dry.stdout) == [f"{A} adjust 1.00", f"{A} ship"]
    real = await ccnow(cfg, "ship", A)
    assert real.code == 0, real.stdout + real.stderr
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust"), (A, "ship")]


async def test_a_dry_run_of_an_adjust_still_queued_shows_its_post_as_the_real_run_sends_it(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The dry run found the command itself as the earlier discount: "refused without asking
    # CCNow: an earlier discount (#1) is queued", no post; the real run posted #1.
    cfg = await queued_adjust(tmp_path, fake_ccnow)
    await make_due(tmp_path)
    dry = await ccnow(cfg, "adjust", A, "--amount", "1.00", "--dry-run")
    assert dry.code == 0, dry.stdout + dry.stderr
    assert "left out" not in dry.stderr
    assert posted(dry.stdout) == [f"{A} adjust 1.00"]
    real = await ccnow(cfg, "adjust", A, "--amount", "1.00")
    assert real.code == 0, real.stdout + real.stderr
    assert commands(tmp_path) == [(A, "succeeded", "pending")]


async def test_a_dry_run_refuses_an_adjust_made_before_behind_an_uncertain_one(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # An adjust recorded beside an open one (two requests at once) and queued behind one now
    # uncertain: the real run refuses it (65), the dry run said it waited and exited 0.
    cfg = await queued_adjust(tmp_path, fake_ccnow)
    execute(
        tmp_path,
        "INSERT INTO commands (account, order_id, action, idempotency_key, amount, state, "
        "created_at) SELECT account, order_id, action, 'k2', amount, 'queued', created_at "
        "FROM commands WHERE id = 1",
        "UPDATE commands SET state = 'uncertain' WHERE id = 1",
    )
    args = ("adjust", A, "--amount", "1.00", "--key", "k2")
    dry = await ccnow(cfg, *args, "--dry-run")
    assert dry.code == 65, dry.stdout + dry.stderr
    assert dry.stdout == ""
    assert (
        f"{A} adjust left out: refused without asking CCNow: an earlier discount of this order "
        "(#1) is uncertain" in dry.stderr
    )
    real = await ccnow(cfg, *args)
    assert real.code == 65, real.stdout + real.stderr
    assert len(fake_ccnow.requests) == 1


async def test_a_second_discount_refused_behind_an_uncertain_one_advises_a_resolve_that_works(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The order also holds an uncertain ship: the resolve advised without `--action adjust` was
    # refused (65: uncertain actions of several kinds).
    cfg = await ship_and_adjust_uncertain(tmp_path, fake_ccnow)
    execute(
        tmp_path,
        "INSERT INTO commands (account, order_id, action, idempotency_key, amount, state, "
        "created_at) SELECT account, order_id, action, 'k3', '2.00', 'queued', created_at "
        "FROM commands WHERE id = 2",
    )
    second = await ccnow(cfg, "adjust", A, "--amount", "2.00", "--key", "k3")
    assert second.code == 65, second.stdout + second.stderr
    advised = re.search(r"`reconciler ccnow resolve ([^`]*)` first", second.stdout)
    assert advised is not None, second.stdout
    words = advised.group(1).replace("--sent|--not-sent", "--sent").split()
    assert words == [A, "--sent", "--action", "adjust"]
    settled = await call_cli("--config", cfg, "ccnow", "resolve", *words)
    assert settled.code == 0, settled.stdout + settled.stderr
    assert settled.stdout == f"{A} adjust sent (command 2)\n"
