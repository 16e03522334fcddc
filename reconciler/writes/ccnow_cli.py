"""`reconciler ccnow ship|cancel|add-tracking|adjust ID...` and `reconciler ccnow resolve`.

The command holds the store itself (a running daemon owns it: then try again later, or let
the daemon's queue send them). Each order's command is recorded, then sent with any queued
command that is due; one line per order on stdout, one summary line on stderr. Exit 0 when
every command is done, 65 when one is refused (bad input, or CCNow said no), 75 when one is
still queued or uncertain.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

from reconciler import store_commands as cmds
from reconciler.config import CCNowConfig, Config
from reconciler.logs import fields
from reconciler.model import InvalidOrderId, OrderKey, normalize_ccnow_id
from reconciler.store import StoreLocked
from reconciler.writes.ccnow_actions import (
    ActionSender,
    BadAction,
    Tally,
    build,
    dry_run_text,
    local_refusal,
)
from reconciler.writes.submit import failpoint

log = logging.getLogger("reconciler.writes.ccnow_actions")

EX_OK = 0
EX_DATAERR = 65
EX_TEMPFAIL = 75
DELIVER_TIMEOUT_S = 10.0


def exit_code(tally: Tally) -> int:
    """Refused wins (trying again will not help), then anything left to do later."""
    if tally.refused:
        return EX_DATAERR
    if tally.queued or tally.uncertain:
        return EX_TEMPFAIL
    return EX_OK


def _locked() -> StoreLocked:
    return StoreLocked(
        "a running daemon holds the store; CCNow actions are taken by the process that holds "
        "it: try again when it is stopped"
    )


async def action_command(
    config: Config,
    cfg: CCNowConfig,
    action: str,
    ids: Sequence[str],
    *,
    notes: str | None,
    carrier: str | None,
    number: str | None,
    amount: str | None,
    key: str | None,
    dry_run: bool,
) -> int:
    """Record, send and report one action on orders."""
    from reconciler.runtime import Runtime

    try:
        new = build(
            cfg, action, ids, notes=notes, carrier=carrier, number=number, amount=amount, key=key
        )
    except BadAction as exc:
        print(f"reconciler: error: {exc}", file=sys.stderr)
        return EX_DATAERR
    if dry_run:
        sys.stdout.write(dry_run_text(cfg, new))
        return EX_OK
    tally = Tally()
    try:
        async with Runtime(config) as rt:
            sender = ActionSender(
                rt.store, rt.session, rt.reconciler, config.ccnow, on_commit=rt.outbox.committed
            )
            await sender.settle_interrupted()
            made = await cmds.by_keys(rt.store, cfg.name, [c.key for c in new])
            fresh = [c for c in new if c.key not in made]
            states = await rt.store.load_orders(
                OrderKey("ccnow", cfg.name, c.order_id) for c in fresh
            )
            wanted = []
            refused_here = 0
            for c in fresh:
                why = local_refusal(states.get(OrderKey("ccnow", cfg.name, c.order_id)))
                if why is None:
                    wanted.append(c)
                else:
                    print(f"{c.order_id} {c.action} refused: {why} (not sent)")
                    refused_here += 1
            recorded = await cmds.record(rt.store, wanted, time.time())
            failpoint("ccnow.recorded")
            mine = [c.id for c in made.values()] + [c.id for c, _new in recorded]
            await sender.send(await cmds.get(rt.store, mine), tally)
            # What earlier runs left queued goes along, reported in the log, not here.
            await sender.send_due()
            earlier = {m.id for m in made.values()}
            tally = _report(await cmds.get(rt.store, mine), earlier, tally, refused_here)
            await rt.outbox.drain(DELIVER_TIMEOUT_S)
    except StoreLocked:
        raise _locked() from None
    print(f"reconciler: ccnow {action}: {tally.line()}", file=sys.stderr)
    log.info(
        "ccnow.actions_run",
        extra=fields(
            account=cfg.name,
            action=action,
            sent=tally.sent,
            done=tally.done,
            refused=tally.refused,
            uncertain=tally.uncertain,
            queued=tally.queued,
        ),
    )
    return exit_code(tally)


def _report(
    rows: Sequence[cmds.Command], earlier: set[int], run: Tally, refused_here: int
) -> Tally:
    """Print one line per command; return the run's tally by where each command ended."""
    tally = Tally(sent=run.sent, refused=refused_here)
    for c in rows:
        again = " (made before with this key)" if c.id in earlier else ""
        print(f"{c.order_id} {c.action} {c.state}: {c.answer or '-'} (command {c.id}){again}")
        tally.count(c.state)
    return tally


async def resolve_command(config: Config, cfg: CCNowConfig, raw_id: str, *, sent: bool) -> int:
    """Settle an order's uncertain action by a person's word."""
    from reconciler.runtime import Runtime

    try:
        order_id = normalize_ccnow_id(raw_id)
    except InvalidOrderId as exc:
        print(f"reconciler: error: {exc}", file=sys.stderr)
        return EX_DATAERR
    try:
        async with Runtime(config) as rt:
            sender = ActionSender(
                rt.store, rt.session, rt.reconciler, config.ccnow, on_commit=rt.outbox.committed
            )
            await sender.settle_interrupted()
            found = await sender.resolve(cfg.name, order_id, sent=sent)
    except StoreLocked:
        raise _locked() from None
    if not found:
        print(f"reconciler: error: {order_id} has no uncertain action", file=sys.stderr)
        return EX_DATAERR
    for c in found:
        if sent:
            print(f"{c.order_id} {c.action} sent (command {c.id})")
        else:
            print(
                f"{c.order_id} {c.action} not sent (command {c.id}); if CCNow should still get "
                "it, run the action again with a new --key"
            )
    return EX_OK
