"""`reconciler run`: the daemon."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from ..config import Config
from .permissions import (
    warn_readable_secrets,
    warn_same_accounts,
    warn_short_retention,
    warn_short_webhook_secrets,
)

if TYPE_CHECKING:
    from ..daemon import Ticks


async def daemon_command(
    config: Config,
    args: argparse.Namespace,
    *,
    stop: asyncio.Event | None = None,
    ticks: Ticks | None = None,
) -> int:
    """Run the daemon until it is stopped (by a signal, or `stop` when given). `ticks`
    (tests) replaces the daemon's own."""
    from ..daemon import TICKS, run_daemon

    warn_readable_secrets(config.secret_files)
    warn_same_accounts(config)
    warn_short_retention(config)
    warn_short_webhook_secrets(config)
    return await run_daemon(config, stop=stop, ticks=ticks or TICKS)
