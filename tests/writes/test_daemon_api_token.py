"""A write command handed to the running daemon whose `[api]` token is not the command's: a
configuration mismatch (exit 78) that says so, with nothing sent; a 401 the daemon passes back
from CCV keeps its own meaning."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import assert_one_line, call_cli, daemon_here, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import FakeCCNow
from tests.server.test_api import TOKEN, api_toml
from tests.writes.test_submit_crash import listening

ORDER = "396-10-1142"


@pytest.fixture
async def ccv() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


async def test_a_token_the_daemon_refuses_is_a_config_error_and_sends_nothing(
    tmp_path: Path, ccv: FakeCCVWrites, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {ORDER: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccv=ccv, ccnow=fake_ccnow, extra=api_toml(port))
    other = tmp_path / "other.toml"  # the same store, another token
    other.write_text(cfg.read_text().replace(TOKEN, "not-the-daemons-token-0123456789"))
    body = json.dumps(submit_body(externalReference="ref-1")).encode()
    async with daemon_here(cfg):
        await listening(port)
        for args in (
            ("ccnow", "ship", ORDER),
            ("ccnow", "resolve", ORDER, "--sent"),
            ("ccv", "submit", "-"),
        ):
            result = await call_cli("--config", other, *args, stdin=body)
            assert_one_line(result, 78, "running daemon refused the [api] token", str(other))
            assert "bearer token is required" not in result.stderr
        # With the daemon's own token the same command goes through; a 401 that is CCV's
        # answer, passed back by the daemon, is not taken for a refused token.
        ccv.submit_replies = [json_reply(401, {"message": "invalid api key"})]
        passed_back = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=body)
        assert passed_back.code == 78, passed_back.stderr
        assert "submit answered HTTP 401" in passed_back.stderr
        assert "refused the [api] token" not in passed_back.stderr
    assert fake_ccnow.actions == []
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        assert conn.execute("SELECT count(*) FROM commands").fetchone() == (0,)
        assert conn.execute("SELECT external_reference FROM submissions").fetchall() == [("ref-1",)]
