"""`reconciler replay --sink NAME`: deliver stored events to a sink again, same ids."""

from __future__ import annotations

import argparse
import logging

from ..config import Config
from ..exits import EX_OK, EX_TEMPFAIL, UsageError
from ..logs import fields
from ..store import Store, StoreLocked
from .progress import progress

log = logging.getLogger("reconciler.cli")


async def replay_command(config: Config, args: argparse.Namespace) -> int:
    """Queue stored events for a sink again and deliver them (unless a daemon will)."""
    from ..delivery import sink_names
    from ..runtime import Runtime

    names = sink_names(config)
    if args.sink not in names:
        raise UsageError(f"no sink named {args.sink!r} ({', '.join(names)})")
    try:
        async with Runtime(config) as rt:
            count = await rt.store.outbox.requeue(args.sink, args.since)
            log.info("replay.queued", extra=fields(sink=args.sink, events=count))
            with progress(f"replay {args.sink}", count, unit="events") as advance:

                def replayed(sink: str, n: int) -> None:
                    if sink == args.sink:
                        advance(n)

                rt.delivery.on_delivered = replayed
                delivered = await rt.delivery.drain(args.deliver_timeout, only=args.sink)
    except StoreLocked:
        # A running daemon owns delivery: queue the events and let it send them.
        store = await Store.open(config.store_path)
        try:
            count = await store.outbox.requeue(args.sink, args.since)
        finally:
            await store.close()
        log.info(
            "replay.queued",
            extra=fields(sink=args.sink, events=count, delivered_by="running daemon"),
        )
        return EX_OK
    return EX_OK if delivered else EX_TEMPFAIL
