"""The integration API's bearer token: whether a request carries it, and the refusal of one
that does not.

A request with no bearer token is told one is required; one whose token is not the daemon's
(an old one after a rotation, another config's) is told so (RFC 6750's `invalid_token`): the
two call for different fixes. Refusals are logged at warning, a client retrying in a loop at
most once a minute for each reason, with how many of that reason were not logged since (told at
the next one logged); the token given never is.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Literal

from aiohttp import web

from ..logs import fields
from ..writes.daemon_api import CHALLENGE, INVALID_CHALLENGE
from .http import json_error

log = logging.getLogger("reconciler.api")

Reason = Literal["missing", "invalid"]  # no bearer token; one that is not the daemon's
LOG_EVERY_S = 60.0  # the least time between two `api.unauthorized` lines


def bearer(header: str | None) -> bytes | None:
    """The bearer token an Authorization header carries, as given; None: it carries none."""
    if header is None:
        return None
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        raw = given.strip().encode("utf-8", "surrogateescape")
    except UnicodeError:
        return b"\xff"  # a token, if not one any config holds
    return raw or None


def token_ok(header: str | None, token: str) -> bool:
    """Return whether an Authorization header carries the bearer token (constant time)."""
    raw = bearer(header)
    return raw is not None and hmac.compare_digest(raw, token.encode("utf-8"))


class TokenRefusals:
    """Refuses the requests without the daemon's token: one per API app."""

    def __init__(
        self,
        token: Callable[[], str],
        *,
        counted: Callable[[Reason], None] = lambda reason: None,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = LOG_EVERY_S,
    ) -> None:
        self.token = token
        self.counted = counted  # a metric's
        self.clock = clock
        self.every_s = every_s
        # Each reason's own window: a client looping without a token must not keep the first
        # request with a wrong one (an old token after a rotation) out of the log.
        self._logged_at: dict[Reason, float] = {}
        self._unlogged: dict[Reason, int] = {}  # refusals since the reason's last line

    def refusal(self, request: web.Request) -> web.Response | None:
        """Return the 401 of a request without the token (400 with two), or None when it
        carries it."""
        if len(request.headers.getall("Authorization", ())) > 1:
            # aiohttp reads the first; a proxy or another server may read the last.
            return json_error(
                400, "Authorization given more than once", extra={"field": "Authorization"}
            )
        header = request.headers.get("Authorization")
        if token_ok(header, self.token()):
            return None
        reason: Reason = "missing" if bearer(header) is None else "invalid"
        self.counted(reason)
        self._log(request.method, reason)
        if reason == "missing":
            words, challenge = "a bearer token is required", CHALLENGE
        else:
            words, challenge = "the bearer token is not valid", INVALID_CHALLENGE
        return json_error(401, words, headers={"WWW-Authenticate": challenge})

    def _log(self, method: str, reason: Reason) -> None:
        now = self.clock()
        logged_at = self._logged_at.get(reason)
        if logged_at is not None and now - logged_at < self.every_s:
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return
        unlogged = self._unlogged.pop(reason, 0)
        self._logged_at[reason] = now
        log.warning(
            "api.unauthorized",
            extra=fields(method=method, reason=reason, not_logged_before=unlogged),
        )
