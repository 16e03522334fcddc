"""What the receiver logs about the requests it refuses, at most one line per interval: they
come from the internet, in any number."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from ..logs import fields
from .connections import JUNK_LOG_INTERVAL_S, RateLimit

# A well-formed notification path of a configured account whose signature or token is wrong:
# most likely a URL made before the secret, public_url or token changed (or a proxy that
# rewrote it), so every later notification for it is lost too. Said at warning, once a minute.
HINTS: Final[Mapping[str, str]] = {
    "bad_signature": "signed with another [receiver] secret or public_url, or altered on the way; "
    "previous_secret keeps older URLs valid while they are replaced",
    "bad_token": "not this account's notification_token",
    "no_notification_token": "a CCNow notification URL, with another account's token, of an "
    "account the config gives no notification_token: give it the token CCNow calls with",
    "account_not_configured": "a notification URL of an account the config no longer names "
    "(renamed or removed), signed or with a configured token: the provider keeps calling it; "
    "name the account again while its orders are open, or give CCNow the new URL",
}
REJECTED_LOG_INTERVAL_S = 60.0


class RefusalLog:
    """`notification.rejected` (warning) for a configured account's URL that fails its
    signature or token, or one of ours for an account no longer configured; once a minute per
    account and reason, so that a stale CCV URL does not hide a wrong CCNow token;
    `request.rejected` (debug) for the rest. `held_back` counts the lines left out since the
    last one."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        # Bounded: keyed by configured accounts (an unconfigured one shares its source's key).
        self.rejected: dict[tuple[str | None, str | None, str], RateLimit] = {}
        self.junk = RateLimit(JUNK_LOG_INTERVAL_S)

    def log(
        self, status: int, reason: str, source: str | None, account: str | None, method: str
    ) -> None:
        """Log one refused request, unless a line was written within the interval."""
        hint = HINTS.get(reason)
        if hint is not None:
            # An unconfigured account's name comes from the URL: anyone holding one CCNow
            # token could make up names, so those share one limit per source.
            named = None if reason == "account_not_configured" else account
            limit = self.rejected.setdefault(
                (source, named, reason), RateLimit(REJECTED_LOG_INTERVAL_S)
            )
            if limit.allow():
                self.logger.warning(
                    "notification.rejected",
                    extra=fields(
                        source=source,
                        account=account,
                        reason=reason,
                        held_back=limit.take_held_back(),
                        hint=hint,
                    ),
                )
        elif self.junk.allow():
            self.logger.debug(
                "request.rejected",
                extra=fields(
                    status=status,
                    reason=reason,
                    method=method,
                    held_back=self.junk.take_held_back(),
                ),
            )
