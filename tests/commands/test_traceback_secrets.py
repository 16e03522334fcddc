"""An unexpected exception whose text quotes a secret of the config (a library echoing the
header or the URL it was given) is logged with its traceback, every secret masked there as
everywhere else: by the log's one edge, whatever logged it. Real processes, the real log."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO, call_cli, cli_env, poll_until, write_config
from tests.fake_providers import CCV_KEY, FakeCCV

ORDER = "3c2b1a00-0000-4000-8000-000000000077"
BASIC = base64.b64encode(f"{CCV_KEY}:".encode()).decode()

# The console script, in a process whose HTTP library fails the way a buggy one would: raising
# a bare exception whose text quotes what it was given (the key's header, the key itself).
_FAILING_CLIENT = """
import os, sys
import aiohttp
from reconciler import cli

async def _request(self, method, url, **kwargs):
    try:
        raise KeyError(os.environ["RECONCILER_CCV_API_KEY"])
    except KeyError as exc:
        raise RuntimeError(f"cannot send {method} {url} with {kwargs.get('headers')!r}") from exc

aiohttp.ClientSession._request = _request
sys.exit(cli.run(sys.argv[1:]))
"""


def leaks(text: str) -> list[str]:
    low = text.lower()
    return [s for s in (CCV_KEY, BASIC, BASIC.rstrip("=")) if s.lower() in low]


def tracebacks(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if "traceback" in line]


async def _start(*args: str, stderr: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FAILING_CLIENT,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
        env=cli_env(),
        cwd=REPO,
    )


def _assert_masked(said: list[dict[str, Any]], stderr: str, message: str) -> None:
    assert [line["message"] for line in said] == [message], stderr
    for line in said:
        text = line["traceback"]
        assert "Traceback (most recent call last)" in text  # still a developer's traceback
        assert "RuntimeError: cannot send GET" in text
        assert "KeyError: '***'" in text  # the chained cause too
        assert "***" in text.split("RuntimeError: cannot send", 1)[1]
    assert not leaks(stderr), stderr


async def test_a_catch_up_s_unexpected_error_keeps_no_secret(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {ORDER: "AwaitingPayment"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0

    proc = await _start("--config", str(cfg), "catch-up", stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)

    stderr = err.decode()
    assert proc.returncode != 0, stderr
    # The command's last line, by the cli's own handler of what no one expected.
    _assert_masked(tracebacks(stderr), stderr, "unexpected error")


async def test_a_daemon_s_failed_pass_keeps_no_secret(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.orders = {ORDER: "AwaitingPayment"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    log = tmp_path / "daemon.log"

    with log.open("ab") as out:
        proc = await _start("--config", str(cfg), "run", stderr=out)
    try:
        await poll_until(lambda: tracebacks(log.read_text()), 30, "a traceback in the log")
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)

    _assert_masked(tracebacks(log.read_text()), log.read_text(), "startup_pass.failed")
