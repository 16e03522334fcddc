"""`reconciler replay --sink NAME`: deliver stored events to a sink again, same ids."""

from __future__ import annotations

import argparse
import logging

from ..config import Config
from ..exits import EX_OK, EX_TEMPFAIL, UsageError
from ..logs import fields
from ..store import Store, StoreLocked, WriterLockHeld
from .progress import progress

log = logging.getLogger("reconciler.cli")


async def replay_command(config: Config, args: argparse.Namespace) -> int:
    """Queue stored events for a sink again and deliver them (unless a daemon will); 75 when
    the sink kept some undelivered or dead-lettered one during the run."""
    from ..runtime import Runtime
    from ..sinks import sink_names

    names = sink_names(config)
    if args.sink not in names:
        raise UsageError(f"no sink named {args.sink!r} ({', '.join(names)})")
    try:
        async with Runtime(config) as rt:
            count = await rt.store.outbox.requeue(
                args.sink, args.since, undelivered=args.undelivered
            )
            log.info("replay.queued", extra=fields(sink=args.sink, events=count))
            sent = 0
            with progress(f"replay {args.sink}", count, unit="events") as advance:

                def replayed(sink: str, n: int) -> None:
                    nonlocal sent
                    if sink == args.sink:
                        sent += n
                        advance(n)

                rt.delivery.on_delivered = replayed
                await rt.delivery.drain(args.deliver_timeout, only=args.sink)
            undelivered = (await rt.store.outbox.pending_counts(args.sink)).get(args.sink, 0)
            dead = rt.delivery.dead_letters.get(args.sink, 0)
            ok = not undelivered and not dead
            log.log(
                logging.INFO if ok else logging.WARNING,
                "replay.done",
                extra=fields(
                    sink=args.sink, delivered=sent, undelivered=undelivered, dead_letters=dead
                ),
            )
    except StoreLocked as exc:
        # The store's writer owns delivery: queue the events for it. Not always a daemon (a
        # `catch-up`, a `track`...): what holds the store is said, not guessed.
        pid = exc.pid if isinstance(exc, WriterLockHeld) else None
        holder = "the process holding the store" + (f" (pid {pid})" if pid else "")
        store = await Store.open(config.store_path)
        try:
            count = await store.outbox.requeue(args.sink, args.since, undelivered=args.undelivered)
        finally:
            await store.close()
        log.info(
            "replay.queued",
            extra=fields(sink=args.sink, events=count, delivered_by=holder),
        )
        return EX_OK
    return EX_OK if ok else EX_TEMPFAIL
