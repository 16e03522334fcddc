"""The daemon's words for a listen address it cannot take (server/http.py `start_as`): the
system's reason, and the capability hint only where the capability would help."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env, daemon_here, free_port, write_config
from tests.fake_providers import FakeCCV

NOT_A_HOST = "reconciler-test.invalid"


async def test_a_listen_host_name_not_resolved_says_why(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    # getaddrinfo's code is no errno: its number read as one printed "Unknown error -2".
    port = free_port()
    with pytest.raises(socket.gaierror) as resolved:
        socket.getaddrinfo(NOT_A_HOST, port)
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        extra=f'[receiver]\nlisten = "{NOT_A_HOST}:{port}"\npublic_url = "http://127.0.0.1"\n',
    )
    async with daemon_here(cfg, cli_env(RECONCILER_RECEIVER_SECRET="s" * 32)) as run:
        assert await run.wait() == 75
    log = (tmp_path / "daemon.log").read_text()
    why = resolved.value.strerror
    assert f"reconciler: receiver cannot listen on {NOT_A_HOST}:{port}: {why}" in log, log
    assert "Unknown error" not in log


# A port from 1024 up refused to this user: a network namespace of its own whose unprivileged
# ports start above it, the capability dropped (as the shipped unit runs it).
HIGH_PORT = 2000
_REFUSING = [
    "unshare",
    "--net",
    "sh",
    "-c",
    "echo 3000 > /proc/sys/net/ipv4/ip_unprivileged_port_start && ip link set lo up && "
    'exec setpriv --bounding-set=-net_bind_service "$@"',
    "sh",
]


def _high_port_refused() -> bool:
    if not all(shutil.which(tool) for tool in ("unshare", "setpriv", "ip")):
        return False
    probe = f"import socket; socket.socket().bind(('127.0.0.1', {HIGH_PORT}))"
    run = subprocess.run([*_REFUSING, sys.executable, "-c", probe], capture_output=True)
    return b"PermissionError" in run.stderr


@pytest.mark.skipif(not _high_port_refused(), reason="cannot refuse this user a port above 1024")
async def test_a_port_above_1024_refused_to_this_user_has_no_capability_hint(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The capability only opens the ports below 1024: the hint misled the reader about others.
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        extra=f'[receiver]\nlisten = "127.0.0.1:{HIGH_PORT}"\npublic_url = "http://127.0.0.1"\n',
    )
    proc = await asyncio.create_subprocess_exec(
        *_REFUSING,
        sys.executable,
        "-m",
        "reconciler",
        "--config",
        str(cfg),
        "run",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(RECONCILER_RECEIVER_SECRET="s" * 32),
        cwd=REPO,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 78, err.decode()
    [line] = [x for x in err.decode().splitlines() if x.startswith("config error")]
    assert line == (
        f"config error: {cfg}: receiver.listen: cannot listen on 127.0.0.1:{HIGH_PORT}: "
        "Permission denied"
    )
