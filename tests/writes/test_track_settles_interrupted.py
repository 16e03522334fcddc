"""`track ccv ID --ref REF` settles a submit a killed `ccv submit` left `sending`: without a
daemon, `track` holds the writer lock and first settles the interrupted writes (uncertain, with
its event), as every writer does at its start, then settles it by its reference; with one, the
daemon settled them at its start and settles it through its `[api]`. A real `reconciler ccv
submit` process is SIGKILLed while the fake holds its post, unanswered."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    call_cli,
    cli_env,
    daemon_here,
    free_port,
    read_events,
    write_config,
)
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import api_toml
from tests.writes.test_catch_up_settles_writes import killed_while_posting
from tests.writes.test_submit_crash import ORDER, listening, submission_state

SUBMIT_EVENTS = ("order.submit_uncertain", "order.submit_resolved")


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


async def killed_submit(cfg: Path, fake: FakeCCVWrites) -> None:
    """Leave the submit of `shop-7` `sending`: its process killed while CCV holds the post."""
    fake.submit_hold = asyncio.Event()
    body = json.dumps(submit_body(externalReference="shop-7")).encode()
    await killed_while_posting(
        cfg,
        ["ccv", "submit", "-"],
        lambda: fake.wait_until(lambda: len(fake.submits) == 1, 30),
        stdin=body,
    )
    fake.submit_hold.set()  # CCV makes the order, for a caller that is gone
    assert submission_state(cfg.parent, "shop-7") == "sending"


def submit_events(tmp_path: Path) -> list[tuple[str, str, str | None]]:
    return [
        (e["type"], e["data"]["external_reference"], e["data"].get("how"))
        for e in read_events(tmp_path)
        if e["type"] in SUBMIT_EVENTS
    ]


async def test_track_ref_settles_a_submit_a_killed_ccv_submit_left_sending(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    await killed_submit(cfg, fake)

    tracked = await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "shop-7")
    assert tracked.code == 0, tracked.stderr
    assert submission_state(tmp_path, "shop-7") == "resolved"
    # The next catch-up delivers both events, and raises no second alert on the settled one.
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    assert submission_state(tmp_path, "shop-7") == "resolved"
    assert submit_events(tmp_path) == [
        ("order.submit_uncertain", "shop-7", None),
        ("order.submit_resolved", "shop-7", "track"),
    ]
    assert len(fake.submits) == 1  # never sent again


async def test_track_ref_settles_it_under_an_account_the_config_no_longer_names(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    extra = api_toml(free_port())
    await killed_submit(
        write_config(tmp_path, ccv=fake, ccv_extra='name = "eu"', extra=extra), fake
    )
    cfg = write_config(tmp_path, ccv=fake, ccv_extra='name = "asia"', extra=extra)

    track = ("track", "ccv", ORDER, "--ref", "shop-7", "--account", "eu")
    tracked = await call_cli("--config", cfg, *track)
    assert tracked.code == 0, tracked.stderr
    assert submission_state(tmp_path, "shop-7") == "resolved"


async def test_the_running_daemon_settled_it_at_its_start_and_settles_it_by_track(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    await killed_submit(cfg, fake)

    async with daemon_here(cfg):
        await listening(port)  # interrupted writes are settled before the API listens
        assert submission_state(tmp_path, "shop-7") == "uncertain"
        tracked = await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "shop-7")
        assert tracked.code == 0, tracked.stderr
        assert submission_state(tmp_path, "shop-7") == "resolved"
    assert [t for t, _, _ in submit_events(tmp_path)] == list(SUBMIT_EVENTS)
    assert len(fake.submits) == 1


async def test_a_submit_still_sending_is_no_account_track_may_name(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # Its `ccv submit` still runs, holding the writer lock: `track --account eu --ref shop-7`
    # tracked the order under `eu` (exit 0) and settled nothing, a name nothing polls.
    cfg = write_config(tmp_path, ccv=fake, ccv_extra='name = "eu"', extra=api_toml(free_port()))
    fake.submit_hold = asyncio.Event()
    body = json.dumps(submit_body(externalReference="shop-7")).encode()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "reconciler", "--config", str(cfg), "ccv", "submit", "-"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        cwd=REPO,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(body)
        proc.stdin.close()
        await fake.wait_until(lambda: len(fake.submits) == 1, 30)
        assert submission_state(tmp_path, "shop-7") == "sending"
        # The submit is still running with its config: the renaming goes to a second file.
        renamed = tmp_path / "renamed.toml"
        renamed.write_text(cfg.read_text().replace('name = "eu"', 'name = "asia"'))

        track = ("track", "ccv", ORDER, "--ref", "shop-7", "--account", "eu")
        tracked = await call_cli("--config", renamed, *track)
        assert tracked.code == 2, tracked.stderr
        assert "no ccv account named 'eu'" in tracked.stderr
        orders = await call_cli("--config", renamed, "orders", "--json")
        assert json.loads(orders.stdout) == []
    finally:
        fake.submit_hold.set()
        assert proc.stderr is not None
        err = await proc.stderr.read()
        assert await asyncio.wait_for(proc.wait(), 30) == 0, err
    assert submission_state(tmp_path, "shop-7") == "succeeded"
