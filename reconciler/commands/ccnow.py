"""`reconciler ccnow ship|cancel|add-tracking|adjust|resolve`: CCNow order actions."""

from __future__ import annotations

import argparse

from ..config import Config
from ..config.names import configured_account
from .accounts import choose_account
from .orders import settling_account


async def ccnow_command(config: Config, args: argparse.Namespace) -> int:
    """Send (or settle by hand) CCNow order actions for one account."""
    from .ccnow_actions import action_command, resolve_command

    if args.ccnow_command == "resolve":
        account = await settling_account(config, "ccnow", args.account)
        return await resolve_command(config, account, args.id, sent=args.sent, action=args.action)
    cfg = configured_account(config.ccnow, choose_account(config, "ccnow", args.account))
    return await action_command(
        config,
        cfg,
        args.ccnow_command,
        args.ids,
        notes=args.notes,
        carrier=args.carrier,
        number=args.number,
        amount=args.amount,
        key=args.key,
        dry_run=args.dry_run,
    )
