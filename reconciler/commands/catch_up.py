"""`reconciler catch-up`: one full pass over every open order, then deliver, then exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time

from ..config import Config
from ..exits import EX_OK, EX_TEMPFAIL, UsageError
from ..logs import fields
from ..poller.unconfigured import warn_not_configured
from .accounts import account_names
from .permissions import warn_same_accounts, warn_short_retention, warn_short_webhook_secrets
from .progress import progress

log = logging.getLogger("reconciler.cli")


async def catch_up_command(config: Config, args: argparse.Namespace) -> int:
    """One full pass, then deliver; 75 when a source failed or a sink kept events (also one
    it dead-lettered during the run)."""
    from ..delivery import DRAIN_GRACE_S
    from ..runtime import Runtime

    if args.source is not None and not account_names(config, args.source):
        # Asking nothing and exiting 0 would tell a script that the source was caught up.
        raise UsageError(f"no [{args.source}] account is configured")
    warn_same_accounts(config)
    warn_short_retention(config)
    warn_short_webhook_secrets(config)
    async with Runtime(config) as rt:
        started = time.monotonic()
        # Before retention lets go of the backlogs of sinks no longer configured: said, and
        # counted undelivered (75).
        unconfigured = await warn_not_configured(config, rt.store, args.source)
        # Every open order still watched: what a catch-up asks.
        due = await rt.store.orders.due_counts(
            math.inf, now=time.time(), watched=config.watch_settled()
        )
        total = sum(n for (source, _), n in due.items() if args.source in (None, source))
        with progress("catch-up", total) as advance:
            rt.reconciler.on_checked = advance
            delivering = asyncio.ensure_future(rt.delivery.run())
            try:
                report = await rt.coordinators.catch_up(args.source)
            finally:
                # One limit for the batches in hand and the rest: it starts with the wait.
                end = time.monotonic() + args.deliver_timeout
                rt.delivery.stop(within_s=args.deliver_timeout + DRAIN_GRACE_S)
                await delivering
        await rt.delivery.drain(max(end - time.monotonic(), 0.0))
        await rt.prune()  # also lets go of the rows of sinks no longer configured
        # A name no longer configured counts what it held at the start, as its warning said:
        # the prune let go of what it never gets now (all of it a week after the name was
        # first found unconfigured, the events older than the window at once).
        undelivered = await rt.store.outbox.pending_counts() | unconfigured
        # A dead letter is an event its sink does not have, as much as a pending one.
        dead = {k: v for k, v in rt.delivery.dead_letters.items() if v}
        delivered = not any(undelivered.values()) and not dead
        log.log(
            logging.INFO if report.ok and delivered else logging.WARNING,
            "catch-up.done",
            extra=fields(
                checked=report.checked,
                failed=report.failed,
                events=report.events,
                failing_sources=sorted(report.failed_sources),
                undelivered={k: v for k, v in undelivered.items() if v},
                dead_letters=dead,
                seconds=round(time.monotonic() - started, 3),
            ),
        )
    return EX_OK if report.ok and delivered else EX_TEMPFAIL
