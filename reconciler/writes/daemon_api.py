"""A command handed to the running daemon's `[api]` (the daemon holds the store): the request,
its authorization, and what it means when the daemon refuses it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from ..config import ApiConfig
from ..exits import EX_CONFIG, EX_TEMPFAIL
from ..logs import say
from ..store.errors import StoreLocked

# What the API answers a request without its token with (server/api_requests.py). A status the
# daemon passes back from a provider (CCV's own 401 to a submit) never carries it.
CHALLENGE = 'Bearer realm="reconciler"'
# ... and a request whose bearer token is not the daemon's (RFC 6750's `invalid_token`).
INVALID_CHALLENGE = f'{CHALLENGE}, error="invalid_token"'
# How long a command waits for the daemon, which may be sending a batch of writes meanwhile.
API_TIMEOUT_S = 300.0


def authorization(api: ApiConfig) -> dict[str, str]:
    """The request headers that carry this config's API token."""
    return {"Authorization": f"Bearer {api.token.reveal()}"}


def token_refused(status: int, headers: Mapping[str, str]) -> bool:
    """Whether the daemon itself refused the token: nothing was read, written or sent."""
    return status == 401 and headers.get("WWW-Authenticate") in (CHALLENGE, INVALID_CHALLENGE)


def daemon_stopping(status: int, document: object) -> bool:
    """Whether the daemon's API refused a request because its stop began (server/stopping.py,
    on a connection it had taken): nothing was done for it."""
    return status == 503 and document == {"error": "stopping"}


def stopping_said() -> int:
    """Say that the daemon refused the command as it stops; return the exit code (try again)."""
    say(
        "reconciler: the running daemon is stopping: nothing was sent or recorded; run the same "
        "command again once it has stopped or started again",
        logging.WARNING,
    )
    return EX_TEMPFAIL


def refused(config_file: str) -> int:
    """Say that the daemon refused this config's token; return the exit code (a config error:
    the command's config and the daemon's disagree, and trying again changes nothing)."""
    say(
        f"reconciler: error: the running daemon refused the [api] token of {config_file}: it is "
        "not the daemon's token (nothing was sent); use the daemon's config, or give both the "
        "same token",
    )
    return EX_CONFIG


def nobody_listens(api: ApiConfig) -> int:
    """Say that another process holds the store and no daemon's API listens (a catch-up, say):
    nothing was sent; return the exit code (try again once it is done)."""
    say(
        f"reconciler: another reconciler process holds the store and no daemon's API listens at "
        f"{api.url('')}: nothing was sent; run the same command again once it is done",
        logging.WARNING,
    )
    return EX_TEMPFAIL


def held_elsewhere(outcome: str) -> StoreLocked:
    """The error of a write command that found the store held and no `[api]` to go through;
    `outcome` says what was left undone."""
    # The [api] missing is the command's config's: whether the holder is a daemon, and with an
    # [api] or not, the command cannot tell.
    return StoreLocked(
        "another reconciler process holds the store (a daemon or a catch-up) and this config has "
        f"no [api] to go through: {outcome}; run the same command again once it is done, or give "
        "the daemon and this config the same [api] so that it goes through the daemon"
    )


async def post_to_api(
    config_file: str,
    api: ApiConfig,
    path: str,
    document: dict[str, Any],
    *,
    timeout_s: float = API_TIMEOUT_S,
) -> tuple[int, dict[str, Any]] | int:
    """POST to the running daemon's API; return (status, JSON object) or an exit code (75 when
    it does not answer within `timeout_s`)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        try:
            async with s.post(
                api.url(path), json=document, headers=authorization(api), allow_redirects=False
            ) as resp:
                if token_refused(resp.status, resp.headers):
                    return refused(config_file)
                status = resp.status
                body = await resp.json(content_type=None)
        except aiohttp.ClientConnectorError:
            return nobody_listens(api)  # another command (a catch-up, say) holds the store
        # asyncio's TimeoutError, aiohttp's whole-request timeout: on Python 3.10 it is not the
        # built-in one (which it is from 3.11 on).
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            # Recorded or not, the same run later finds the same commands by their keys.
            say(
                f"reconciler: the daemon's API did not answer ({type(exc).__name__}); "
                "run the same command again to see what became of it",
                logging.WARNING,
            )
            return EX_TEMPFAIL
    if not isinstance(body, dict):
        say(f"reconciler: error: the daemon answered HTTP {status}")
        return EX_TEMPFAIL
    if daemon_stopping(status, body):
        return stopping_said()
    return status, body
