"""`reconciler run`: the daemon."""

from __future__ import annotations

import argparse

from ..config import Config
from ..exits import TempFailure
from .permissions import warn_readable_secrets


async def daemon_command(config: Config, args: argparse.Namespace) -> int:
    """Run the daemon until it is stopped; a start it cannot make is a temporary failure."""
    from ..daemon import StartupError, run_daemon

    warn_readable_secrets(config.secret_files)
    try:
        return await run_daemon(config)
    except StartupError as exc:
        raise TempFailure(str(exc)) from None
