"""CCV answering a submit `409` ("already submitted", a status its document does not list) says
it may hold an order of that reference that nothing follows: the submit is `uncertain` (one
`order.submit_uncertain`, the reference held: a new submit of it is refused, never sent), and
`ccv submit` exits 75 with what settles it, with and without a running daemon. Before, it was
`failed` (65) and the reference free to be sent again."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import call_cli, daemon_here, free_port, read_events, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import api_toml
from tests.writes.test_submit_crash import UNCERTAIN, listening, query

ALREADY = json_reply(409, {"error": "order already submitted"})


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


@pytest.mark.parametrize("through_daemon", [False, True])
async def test_ccvs_409_leaves_the_submit_uncertain_and_the_reference_held(
    tmp_path: Path, fake: FakeCCVWrites, through_daemon: bool
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    fake.submit_replies = [ALREADY]
    stdin = json.dumps(submit_body(externalReference="dup-409")).encode()

    async def submit() -> tuple[int, str, str]:
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        return result.code, result.stdout, result.stderr

    if through_daemon:
        async with daemon_here(cfg):
            await listening(port)
            code, stdout, stderr = await submit()
            again = await submit()
    else:
        code, stdout, stderr = await submit()
        again = await submit()
    assert (code, stdout) == (75, ""), stderr
    assert "HTTP 409" in stderr and "dup-409 is uncertain" in stderr, stderr
    assert "reconciler track ccv ID --ref dup-409" in stderr
    assert query(tmp_path, "SELECT state, http_status FROM submissions") == [("uncertain", 409)]
    events = [e for e in read_events(tmp_path) if e["type"] == UNCERTAIN]
    assert [e["data"]["reason"] for e in events] == ["http_409"]
    # The reference is held: the same file again is refused as submitted already, not sent.
    assert again[0] == 65 and "submitted already" in again[2], again
    assert len(fake.submits) == 1
