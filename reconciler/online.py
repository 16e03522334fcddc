"""`check --online`: one harmless request per provider account to prove the credentials."""

from __future__ import annotations

import sys
from collections.abc import Awaitable

from .config import Config
from .exit_codes import EX_CONFIG, EX_OK, EX_TEMPFAIL
from .runtime import http_session
from .sources.ccnow import CCNowClient
from .sources.ccv import CCVClient
from .sources.errors import AuthenticationFailed, SourceError


async def check_online(config: Config) -> int:
    """Return 0 when every account answered, 78 when credentials were refused, else 75."""
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
                print(f"{name}: credentials refused ({exc})", file=sys.stderr)
                worst = EX_CONFIG
            except SourceError as exc:
                print(f"{name}: unavailable ({exc})", file=sys.stderr)
                worst = max(worst, EX_TEMPFAIL) if worst != EX_CONFIG else worst
            else:
                print(f"{name}: ok")
    return worst
