"""`reconciler check [--online]`: the config is valid; online, one harmless request per account
proves the credentials."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable

from ..config import Config
from ..exits import EX_CONFIG, EX_OK, EX_TEMPFAIL
from .permissions import warn_readable_secrets
from .terminal import shown


async def check_command(config: Config, args: argparse.Namespace) -> int:
    """Config is valid when we get here; with --online, ask each provider once."""
    accounts = [f"ccv/{c.name}" for c in config.ccv] + [f"ccnow/{c.name}" for c in config.ccnow]
    print(f"config ok: {config.file} (accounts: {', '.join(accounts)}; store: {config.store_path})")
    warn_readable_secrets(config.secret_files)
    if not args.online:
        return EX_OK
    return await check_online(config)


async def check_online(config: Config) -> int:
    """Return 0 when every account answered, 78 when credentials were refused, else 75."""
    from ..runtime import http_session
    from ..sources.ccnow import CCNowClient
    from ..sources.ccv import CCVClient
    from ..sources.errors import AuthenticationFailed, SourceError

    worst = EX_OK
    async with http_session(config) as session:
        checks: list[tuple[str, Awaitable[object]]] = [
            (f"ccv/{c.name}", CCVClient(c, session).probe()) for c in config.ccv
        ]
        checks += [
            (f"ccnow/{c.name}", CCNowClient(c, session).pending_list()) for c in config.ccnow
        ]
        for name, probe in checks:
            try:
                await probe
            except AuthenticationFailed as exc:
                print(f"{name}: credentials refused ({shown(str(exc))})", file=sys.stderr)
                worst = EX_CONFIG
            except SourceError as exc:
                print(f"{name}: unavailable ({shown(str(exc))})", file=sys.stderr)
                worst = max(worst, EX_TEMPFAIL) if worst != EX_CONFIG else worst
            else:
                print(f"{name}: ok")
    return worst
