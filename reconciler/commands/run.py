"""`reconciler run`: the daemon."""

from __future__ import annotations

import argparse
import asyncio

from ..config import Config
from ..exits import TempFailure
from .permissions import warn_readable_secrets


async def daemon_command(
    config: Config, args: argparse.Namespace, *, stop: asyncio.Event | None = None
) -> int:
    """Run the daemon until it is stopped (by a signal, or `stop` when given); a start it
    cannot make is a temporary failure."""
    from ..daemon import StartupError, run_daemon

    warn_readable_secrets(config.secret_files)
    try:
        return await run_daemon(config, stop=stop)
    except StartupError as exc:
        raise TempFailure(str(exc)) from None
