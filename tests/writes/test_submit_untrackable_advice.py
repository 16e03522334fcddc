"""What `ccv submit` advises for a 2xx it cannot follow comes from the submission as stored
(its `reason`), not from the words of the refusal it would meet: those quote the reference
and CCV's `Location`, and reach the command line redacted and percent-encoded through the
daemon. Through the real command line, the loopback fake CCV and a running daemon."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import call_cli, daemon_here, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import api_toml
from tests.writes.test_submit_crash import listening

# A reference may hold any printable letter: this one quotes the end of `--made`'s advice.
REF = "R --made` closes it"
UNUSABLE = "names its order under an id reconciler cannot use"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


@pytest.mark.parametrize("through", [False, True], ids=["here", "daemon"])
async def test_a_201_naming_no_order_advises_track_whatever_its_reference_says(
    tmp_path: Path, fake: FakeCCVWrites, through: bool
) -> None:
    # A 201 naming no order id: CCV made it, and `track ccv ID` with the reference settles it.
    # Taken for an id `track` cannot take, the advice was `--made`, losing the reference.
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    fake.submit_replies = [json_reply(201, {"result": "ok"})]
    stdin = json.dumps(submit_body(externalReference=REF)).encode()
    args = ("--config", cfg, "ccv", "submit", "-")
    if through:
        async with daemon_here(cfg):
            await listening(port)
            submitted = await call_cli(*args, stdin=stdin)
    else:
        submitted = await call_cli(*args, stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert UNUSABLE not in submitted.stderr, submitted.stderr
    assert "`reconciler track ccv ID --ref" in submitted.stderr, submitted.stderr


@pytest.mark.parametrize("through", [False, True], ids=["here", "daemon"])
async def test_an_unusable_order_id_advises_made(
    tmp_path: Path, fake: FakeCCVWrites, through: bool
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    fake.submit_replies = [json_reply(200, {"orderId": "ORD 7/2"})]
    stdin = json.dumps(submit_body(externalReference="odd-1")).encode()
    args = ("--config", cfg, "ccv", "submit", "-")
    if through:
        async with daemon_here(cfg):
            await listening(port)
            submitted = await call_cli(*args, stdin=stdin)
    else:
        submitted = await call_cli(*args, stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert UNUSABLE in submitted.stderr, submitted.stderr
    assert "`reconciler ccv resolve --ref odd-1 --made` closes it" in submitted.stderr
