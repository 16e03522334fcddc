"""CCNow refusing an account's credentials to a post of actions (`error_message invalid
password`), read as `check --online` reads the same answer (sources/ccnow_answer's
`refuses_credentials`, through `AuthenticationFailed`): nothing of the post ran, and sent again
with the same password it would be refused again. Its commands stay queued, their answer
`credentials refused (...)`, with one warning when they are first held so; not posted while the
account's health fails (its `source.failed` said why, once), and sent when it answers again (a
fixed password and a restart, or CCNow's password set back); the same command line sends them
at once, its config's password perhaps fixed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler.config import CCNowConfig
from reconciler.logs import fields
from reconciler.sources.errors import SourceError
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_outcome import RETRY_FIRST_S
from reconciler.writes.ccnow_requeue import naming, requeue
from reconciler.writes.ccnow_taken import CREDENTIALS_REFUSED, Tally, is_held

__all__ = [
    "ADVICE",
    "CREDENTIALS_REFUSED",
    "CredentialsRefused",
    "due_now",
    "hold",
    "is_held",
]

# The actions' logger: the line is logged under the name operators filter on.
log = logging.getLogger("reconciler.writes.ccnow_actions")


class CredentialsRefused(SourceError):
    """CCNow's answer to a post refused the account's credentials: nothing of it ran. Its text
    is the answer's words, masked; `reached_before`, `hidden_before`: an earlier attempt of the
    post may have reached CCNow, or its answer may hide that CCNow ran it (Posted's)."""

    reason = "authentication"

    def __init__(self, words: str, *, reached_before: bool, hidden_before: bool) -> None:
        super().__init__(words)
        self.reached_before = reached_before
        self.hidden_before = hidden_before


async def hold(
    store: Store,
    now: float,
    cfg: CCNowConfig,
    batch: Sequence[cmds.Command],
    exc: CredentialsRefused,
    tally: Tally,
) -> None:
    """Queue a post's commands again after CCNow refused the credentials, due in 30 s (a
    restart with a fixed password sends them then, not an hour later): one warning for those
    not held so before, none for those that were (each attempt would be one line more)."""
    words = f"{CREDENTIALS_REFUSED} ({exc})"
    # Claimed for the post they are `sending`: one held before keeps the answer saying so.
    fresh = [c for c in batch if not (c.answer or "").startswith(f"{CREDENTIALS_REFUSED} (")]
    # As a post turned away: one an earlier attempt may have reached CCNow with keeps it.
    lost, hidden = exc.reached_before, exc.hidden_before
    await requeue(
        *(store, now, cfg, batch, words, tally),
        lost=lost,
        delay=RETRY_FIRST_S,
        hidden=hidden,
        said=False,
    )
    if fresh:
        log.warning(
            "ccnow.action_credentials_refused",
            extra=fields(account=cfg.name, **naming(fresh), reason=words),
        )
    else:
        log.debug("ccnow.action_credentials_refused_again", extra=fields(account=cfg.name))


# What the command line says after a held command's answer: what to do.
ADVICE = (
    ": the commands stay queued; fix the password (`reconciler check --online` says when it is "
    "taken), and the daemon or this command again sends them"
)


async def due_now(store: Store, now: float) -> list[cmds.Command]:
    """The queued commands due at `now` (`cmds.due`) but those held for their account's
    credentials while the account's health fails (its poll refused too: posted, they would be
    refused again)."""
    failing: dict[str, bool] = {}
    kept = []
    for c in await cmds.due(store, now):
        if is_held(c) and c.account not in failing:
            failing[c.account] = (await store.sources.state("ccnow", c.account)).failing
        if not (is_held(c) and failing[c.account]):
            kept.append(c)
    return kept
