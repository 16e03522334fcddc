"""`reconciler ccnow ship|cancel|add-tracking|adjust ID...` and `reconciler ccnow resolve`.

The command holds the store itself; when a running daemon owns it, the commands (and a
resolve) go to the daemon through its `[api]`, and without one the command says to try again
when it is stopped. Each order's command is recorded, then sent with any queued
command that is due; one line per order on stdout, one summary line on stderr. Exit 0 when
every command is done, 65 when one is refused (bad input, or CCNow said no), 75 when one is
still queued, sending or uncertain. Refused wins over the rest (`exit_code`): a person must look
at it, and running the line again only reports it refused again; the others are durable (sent
by the daemon or the next line, settled by `ccnow resolve`), and a run exiting 65 says on
stderr which of them are left to do.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from collections.abc import Sequence
from typing import Any

from reconciler.config import ApiConfig, CCNowConfig, Config
from reconciler.exits import EX_DATAERR, EX_OK, EX_TEMPFAIL
from reconciler.logs import fields, say
from reconciler.model import InvalidOrderId, normalize_ccnow_id
from reconciler.redact import GIVEN_SECRET, config_secrets, given_secrets, holds_secret, redact
from reconciler.store import Store, StoreError
from reconciler.store import commands as cmds
from reconciler.store.withdraw import ASKED, WITHDRAWN
from reconciler.writes.ccnow_actions import (
    BadAction,
    Tally,
    build,
    dry_run_text,
    sort_out,
)
from reconciler.writes.ccnow_keys import made_before
from reconciler.writes.ccnow_outcome import second_discount
from reconciler.writes.ccnow_resolve import RESOLVE_ACTIONS, NotResolved
from reconciler.writes.ccnow_taken import UNCONFIRMED, answer_word
from reconciler.writes.ccnow_turn import past_pending
from reconciler.writes.daemon_api import held_elsewhere, post_to_api

from .accounts import account_names

log = logging.getLogger("reconciler.writes.ccnow_actions")

DELIVER_TIMEOUT_S = 10.0
Settled = tuple[str, str, object, str | None]  # a command's order id, action, id, answer


def exit_code(tally: Tally) -> int:
    """Refused wins (trying again will not help), then anything left to do later."""
    if tally.refused:
        return EX_DATAERR
    if tally.queued or tally.uncertain or tally.sending:
        return EX_TEMPFAIL
    return EX_OK


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
    from reconciler.runtime import writer_unless_held

    try:
        given = {"notes": notes, "carrier": carrier, "number": number, "amount": amount}
        secrets = given_secrets(config_secrets(config))
        new = build(cfg, action, ids, **given, key=key, secrets=secrets)
    except BadAction as exc:
        say(f"reconciler: error: {exc}")
        return EX_DATAERR
    if dry_run:
        return await _dry_run(config, cfg, new)
    async with writer_unless_held(config) as rt:
        if rt is not None:
            sender = rt.action_sender()
            try:
                taken = await sender.take(new)
            except BadAction as exc:
                say(f"reconciler: error: {exc}")
                return EX_DATAERR
            await rt.delivery.drain(DELIVER_TIMEOUT_S)
            return _finish(cfg.name, action, taken.to_json(), taken.sent)
    if config.api is None:
        raise held_elsewhere("nothing was sent")
    return await _through_api(config, config.api, cfg, action, new)


async def _dry_run(config: Config, cfg: CCNowConfig, new: Sequence[cmds.NewCommand]) -> int:
    """Print the posts the real run would send: without the orders it refuses without asking
    CCNow, as the snapshot (read beside any writer: a daemon may run) has them, nor those
    whose key made their command before (the real run reports that one: its exit counts;
    one still queued and due it sends as asked); a key given to another command is refused,
    as by the real run; nor those the real run holds back behind an older command of their order
    (`cmds.in_line`), but with an older one it sends first (queued and due) before them."""
    rounds: list[list[cmds.NewCommand]] = [list(new)]
    refused: list[tuple[cmds.NewCommand, str]] = []
    second: list[tuple[cmds.NewCommand, str]] = []
    held: list[tuple[cmds.NewCommand, cmds.Command]] = []
    known: dict[cmds.NewCommand, cmds.Command] = {}
    try:
        store = await Store.open(config.store_path, readonly=True)
    except FileNotFoundError:
        pass  # no snapshot yet: nothing is known about the orders
    except (StoreError, sqlite3.Error, OSError) as exc:
        say(
            f"reconciler: warning: the snapshot cannot be read ({exc}); orders the real run "
            "would refuse without asking CCNow are shown too",
            logging.WARNING,
        )
    else:
        try:
            known = await made_before(store, new)
            # As `take`: only those not made before are sorted out (one still queued would
            # find itself as the earlier discount); those still queued and due are sent.
            accounts = account_names(config, "ccnow")
            fresh = [c for c in new if c not in known]
            posted, past_pending, waiting = await sort_out(store, fresh, accounts)
            again = [known[c] for c in new if c in known and _due(known[c])]
            rounds, held, second = await _lined_up(store, [*again, *posted], accounts)
        except BadAction as exc:
            say(f"reconciler: error: {exc}")
            return EX_DATAERR
        finally:
            await store.close()
        refused = past_pending + waiting
    tally = Tally()
    for c, ahead in held:
        say(
            f"reconciler: {c.order_id} {c.action} left out: queued: waits for #{ahead.id} "
            f"({ahead.action}) of its order",
            logging.WARNING,
        )
        tally.count("queued")
    for c, before in known.items():
        if _due(before):
            continue
        say(
            f"reconciler: {c.order_id} {c.action} left out: made before with this key "
            f"(command {before.id}, {before.state}: {answer_word(before.state, before.answer)})",
            logging.WARNING,
        )
        tally.count(before.state)
    for c, why in refused + second:
        say(
            f"reconciler: {c.order_id} {c.action} left out: refused without asking CCNow: {why}",
            logging.WARNING,
        )
    # Made before: the real run refuses them (`refuse_second`, `refuse_past_pending`).
    tally.refused += len(second)
    if any(rounds):
        # The password field is masked by name; a secret elsewhere (in the URL's query) too.
        text = "\n".join(dry_run_text(cfg, posts) for posts in rounds if posts)
        sys.stdout.write(redact(text, config_secrets(config)))
    return exit_code(tally)


def _new(c: cmds.NewCommand | cmds.Command) -> cmds.NewCommand:
    if isinstance(c, cmds.NewCommand):
        return c
    return cmds.NewCommand(
        c.account, c.order_id, c.action, c.key, c.notes, c.amount, c.trackname, c.tracknumber
    )


async def _lined_up(
    store: Store, going: list[cmds.Command | cmds.NewCommand], accounts: Sequence[str]
) -> tuple[
    list[list[cmds.NewCommand]],
    list[tuple[cmds.NewCommand, cmds.Command]],
    list[tuple[cmds.NewCommand, str]],
]:
    """The posts of the commands the dry run would send, in rounds (an order's commands in the
    order they were made, the older ones queued and due that the real run sends first among
    them); those it holds back, each by the older command of its order queued or being sent;
    and those made before it refuses: an adjust behind an uncertain one, one whose order is
    past pending in the snapshot (at its turn, `refuse_past_pending`)."""
    lines = await cmds.in_line(store, going, due_by=time.time())
    made = [c for c in going if isinstance(c, cmds.Command)] + [o for x in lines for o in x.first]
    turned = {c.id: why for c, why in await past_pending(store, made)}
    held: list[tuple[cmds.NewCommand, cmds.Command]] = []
    second: list[tuple[cmds.NewCommand, str]] = []
    per_order: dict[tuple[str, str], dict[object, cmds.NewCommand]] = {}
    for c, line in zip(going, lines, strict=True):
        mine = per_order.setdefault((c.account, c.order_id), {})
        for o in line.first:
            if o.id not in turned:  # refused at its turn, not posted
                mine.setdefault(o.id, _new(o))
        if line.held is None and isinstance(c, cmds.Command) and c.id in turned:
            second.append((_new(c), turned[c.id]))
        elif line.held is None:
            mine.setdefault(c.id if isinstance(c, cmds.Command) else c, _new(c))
        elif line.held.state == "uncertain":
            second.append((_new(c), second_discount(line.held, accounts)))
        else:
            held.append((_new(c), line.held))
    rounds: list[list[cmds.NewCommand]] = []
    for posts in per_order.values():
        for n, c in enumerate(posts.values()):
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(c)
    return rounds, held, second


def _due(c: cmds.Command) -> bool:
    """Whether the real run sends a command made before: queued and due (one whose next
    attempt is ahead, a Retry-After's, waits for it)."""
    return c.state == "queued" and cmds.is_due(c, time.time())


def _finish(account: str, action: str, results: Sequence[dict[str, Any]], sent: int) -> int:
    """Print one line per order and the summary line; return the exit code."""
    tally = Tally(sent=sent)
    for r in results:
        again = " (made before with this key)" if r.get("made_before") else ""
        where = "not sent" if r["id"] is None else f"command {r['id']}"
        if r.get("next_attempt_at"):  # queued, waiting for its time (a Retry-After's)
            where += f", not posted before {r['next_attempt_at']}"
        outcome = str(r["outcome"])  # the command's own word: `succeeded`, `not_sent`, ...
        answer = answer_word(outcome, str(r["answer"]) if r["answer"] else None)
        print(f"{r['order_id']} {r['action']} {outcome}: {answer} ({where}){again}")
        if r.get("unconfirmed"):
            # Its close raised `order.action_unconfirmed`: said here too, where it was asked.
            print(f"{r['order_id']} {r['action']} unconfirmed: {UNCONFIRMED} ({where})")
        tally.count(outcome)
    code = exit_code(tally)
    # Under journald: an error line when one was refused, a warning when some wait, else info.
    level = {EX_DATAERR: logging.ERROR, EX_TEMPFAIL: logging.WARNING}.get(code, logging.INFO)
    say(f"reconciler: ccnow {action}: {tally.line()}", level)
    if code == EX_DATAERR and (left := tally.left_to_do()):
        left += "; exit 65 is for the refused"  # a script taking 65 as final would miss them
        say(f"reconciler: warning: ccnow {action}: {left}", logging.WARNING)
    log.info(
        "ccnow.actions_run",
        extra=fields(
            account=account,
            action=action,
            sent=tally.sent,
            done=tally.done,
            refused=tally.refused,
            uncertain=tally.uncertain,
            queued=tally.queued,
            sending=tally.sending,
        ),
    )
    return code


async def _through_api(
    config: Config, api: ApiConfig, cfg: CCNowConfig, action: str, new: Sequence[cmds.NewCommand]
) -> int:
    """Hand the commands to the running daemon, which holds the store."""
    first = new[0]
    document = {
        "account": cfg.name,
        "action": action,
        "order_ids": [c.order_id for c in new],
        "notes": first.notes,
        "carrier": first.trackname,
        "number": first.tracknumber,
        "amount": first.amount,
        # the keys are made here, so that a repeated run means the same commands
        "keys": [c.key for c in new],
    }
    answer = await post_to_api(config.file, api, "/api/v1/ccnow/actions", document)
    if isinstance(answer, int):
        return answer
    status, body = answer
    if status not in (200, 202):
        say(
            f"reconciler: error: the daemon answered HTTP {status}: {body.get('error')}",
        )
        return EX_DATAERR if 400 <= status < 500 else EX_TEMPFAIL
    return _finish(cfg.name, action, body["commands"], int(body.get("sent", 0)))


async def resolve_command(
    config: Config, account: str, raw_id: str, *, sent: bool, action: str | None = None
) -> int:
    """Settle an order's uncertain action (the uncertain commands of `action`, a word of
    `--action`, or of its one action) by a person's word (of an account the config may no
    longer name: the word asks nothing of CCNow)."""
    from reconciler.runtime import writer_unless_held

    if holds_secret(raw_id, given_secrets(config_secrets(config))):
        # Before the id's own check, whose refusal quotes it.
        say(f"reconciler: error: the order id given {GIVEN_SECRET}")
        return EX_DATAERR
    try:
        order_id = normalize_ccnow_id(raw_id)
    except InvalidOrderId as exc:
        say(f"reconciler: error: {exc}")
        return EX_DATAERR
    stored = None if action is None else RESOLVE_ACTIONS[action]
    settled: list[Settled] = []
    refusal = NotResolved(order_id, stored, [])
    async with writer_unless_held(config) as rt:
        if rt is not None:
            sender = rt.action_sender()
            try:
                found = await sender.resolve(account, order_id, sent=sent, action=stored)
            except NotResolved as exc:
                refusal = exc
            else:
                said = {c.id: ASKED if c.state == "sending" else c.answer for c in found}
                settled = [(c.order_id, c.action, c.id, said[c.id]) for c in found]
                await rt.delivery.drain(DELIVER_TIMEOUT_S)
    if rt is None:
        # Under systemd the daemon always holds the store: it settles the command itself.
        if config.api is None:
            raise held_elsewhere("nothing was settled")
        answer = await _resolve_through_api(config, config.api, account, order_id, sent, action)
        if isinstance(answer, int):
            return answer
        if isinstance(answer, NotResolved):
            refusal = answer
        else:
            settled = answer
    if not settled:
        if words := refusal.message():
            say(f"reconciler: error: {words}")
            return EX_DATAERR
        elsewhere = [a for a in await _uncertain_accounts(config, order_id) if a != account]
        hint = f" of account {account!r}" if elsewhere else ""
        if elsewhere:
            hint += f"; account {elsewhere[0]!r} has one: give --account {elsewhere[0]}"
        queued = "" if sent else " (nor a queued one to withdraw)"
        say(f"reconciler: error: {order_id} has no uncertain action{hint}{queued}")
        return EX_DATAERR
    return _resolved(settled, sent=sent)


async def _resolve_through_api(
    config: Config, api: ApiConfig, account: str, order_id: str, sent: bool, action: str | None
) -> int | NotResolved | list[Settled]:
    """Have the running daemon settle the commands: those it settled, its refusal (404, 409)
    as the command words it, or the exit code of a failure."""
    document: dict[str, object] = {"account": account, "order_id": order_id, "sent": sent}
    if action is not None:
        document["action"] = action
    answer = await post_to_api(config.file, api, "/api/v1/ccnow/actions/resolve", document)
    if isinstance(answer, int):
        return answer
    status, body = answer
    commands = body.get("commands")
    if status in (404, 409):
        left, queued = (
            [(int(c["id"]), str(c["action"])) for c in body.get(name) or []]
            for name in ("uncertain", "queued")
        )
        stored = None if action is None else RESOLVE_ACTIONS[action]
        return NotResolved(order_id, stored, left, queued=queued)
    if status != 200 or not isinstance(commands, list):
        say(f"reconciler: error: the daemon answered HTTP {status}: {body.get('error')}")
        return EX_DATAERR if 400 <= status < 500 else EX_TEMPFAIL
    sending = [(order_id, str(c["action"]), c["id"], ASKED) for c in body.get("sending") or []]
    said = [(str(c["order_id"]), str(c["action"]), c["id"], c["answer"]) for c in commands]
    return said + sending


async def _uncertain_accounts(config: Config, order_id: str) -> list[str]:
    """The accounts holding an uncertain action of the order, read beside any writer; none when
    the store cannot be read (the error is about the account given, not this hint)."""
    try:
        store = await Store.open(config.store_path, readonly=True)
    except (StoreError, sqlite3.Error, OSError):
        return []
    try:
        return await cmds.uncertain_accounts(store, order_id)
    finally:
        await store.close()


def _resolved(found: Sequence[Settled], *, sent: bool) -> int:
    """Print one line per settled command."""
    for order_id, action, command_id, answer in found:
        if (answer or "").startswith(WITHDRAWN) or answer == ASKED:
            print(f"{order_id} {action} (command {command_id}): {answer}")
        elif sent:
            print(f"{order_id} {action} sent (command {command_id})")
        else:
            print(
                f"{order_id} {action} not sent (command {command_id}); if CCNow should still "
                "get it, run the action again with a new --key"
            )
    return EX_OK
