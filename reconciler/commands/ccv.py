"""`reconciler ccv check-pricing|submit|resolve` and `reconciler notification-url ccv`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat

from ..config import Config, ConfigError, ReceiverConfig, load_config
from ..config.where import config_path
from ..exits import EX_DATAERR, EX_OK, DataError
from ..logs import say
from ..redact import Secrets, config_secrets, given_secrets, text_forms
from ..writes.body_secrets import SENT_SECRET, secret_at, secret_problems
from ..writes.pricing import blocking, check_pricing
from ..writes.submit_body import BadSubmission, prepare
from ..writes.submit_prices import REFUSED, cart_problems
from .accounts import choose_account
from .input import order_ids, read_json, reference_given


def check_pricing_command(args: argparse.Namespace) -> int:
    """Check CCV prices: every problem on its own line (stdout), exit 65 if any blocks."""
    try:
        document = read_json(args.file)
        known = _known_secrets(args)
    except DataError as exc:
        if args.json:  # a script reads one object on stdout, whatever went wrong
            print(json.dumps({"ok": False, "problems": [], "error": str(exc)}))
        raise
    # A secret of its config first, as the API's pricing call refuses it (naming where).
    said = secret_problems(document, None if known is None else given_secrets(known))
    forms = None if known is None else text_forms(known)
    problems = [p.masked(forms) for p in [*said, *check_pricing(document)]]
    if args.json:
        report = {
            "ok": not blocking(problems),
            "problems": [p.to_json() for p in problems],
            "error": None,
        }
        print(json.dumps(report))
    else:
        for problem in problems:
            print(problem.line())
    return EX_DATAERR if blocking(problems) else EX_OK


def _known_secrets(args: argparse.Namespace) -> Secrets | None:
    """The secrets of the config the command would read (`--config`, $RECONCILER_CONFIG, else
    ./reconciler.toml), when there is one: a problem quoting one of them (the API key pasted as
    `currency`) shows it masked, and a body holding one is refused. Without a config file it
    knows none (none is needed)."""
    path = config_path(getattr(args, "config", None))
    try:
        # os.stat, not Path.is_file(): a config this user cannot even look at (a directory it
        # may not search, a name too long) raised there; its secrets are not known either.
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
    except OSError:
        return None
    # Secrets it cannot read (the service's own file) are not known: none is asked for. A
    # config that does not load (a daemon's being edited, a key of a newer release) does not
    # stop a check that needs none: its secrets are not known either.
    try:
        return config_secrets(load_config(path, secrets_optional=True))
    except ConfigError:
        return None


async def ccv_command(config: Config, args: argparse.Namespace) -> int:
    """`ccv submit` or `ccv resolve` (`ccv check-pricing` needs no config)."""
    if args.ccv_command == "resolve":
        from .ccv_resolve import resolve_command
        from .orders import settling_account

        # As CCV may hold it: a reference stored before outer white space was refused settles.
        reference_given("--ref", args.ref, given_secrets(config_secrets(config)), given=False)
        account = await settling_account(config, "ccv", args.account, reference=args.ref)
        return await resolve_command(config, account, args.ref, made=args.made)
    return await submit_command(config, args)


async def submit_command(config: Config, args: argparse.Namespace) -> int:
    """`ccv submit`: submit an order through reconciler."""
    from .ccv_submit import submit_command as submit

    receiver = _need_receiver(
        config, "submitting signs the order's notification URL with [receiver] secret"
    )
    document = read_json(args.file)
    if not isinstance(document, dict):
        # Before the store or the daemon is asked: through the daemon it cost a POST and read
        # as the daemon's refusal. The words are the API's 400's.
        raise DataError("$: the body must be a JSON object")
    # Before the store or the daemon is asked, as the Submitter refuses it: CCV is sent no
    # secret but its key, in the Authorization header.
    where = secret_at(document, given_secrets(config_secrets(config)))
    if where is not None:
        raise DataError(f"{where}: {SENT_SECRET}")
    # Before the store or the daemon is asked, as the daemon's API checks them (submit_prices).
    problems = cart_problems(document)
    if blocking(problems):
        forms = text_forms(config_secrets(config))
        say(f"reconciler: error: {REFUSED}")
        for problem in problems:
            line = problem.masked(forms).line()
            if problem.blocking:
                say(f"reconciler: error: {line}")
            else:
                say(f"reconciler: {line}", logging.WARNING)
        return EX_DATAERR
    account = choose_account(config, "ccv", args.account)
    try:
        # Before the store or the daemon is asked, as the Submitter refuses it: through the
        # daemon the command had logged a reference made for it as sent (`ccv.submit_sending`)
        # that the daemon's 422 then left unrecorded, sent nowhere.
        prepare(document, receiver=receiver, account=account)
    except BadSubmission as exc:
        raise DataError(str(exc)) from None
    # Its warnings as a refusal's (they never refuse it), before it goes: through the daemon
    # as without one.
    forms = text_forms(config_secrets(config)) if problems else None
    for problem in problems:
        say(f"reconciler: {problem.masked(forms).line()}", logging.WARNING)
    return await submit(config, account, document)


async def notification_url_command(config: Config, args: argparse.Namespace) -> int:
    """Print the signed notification URL for a CCV order or external reference."""
    from ..notify import notification_url

    receiver = _need_receiver(config, "notification URLs need [receiver] public_url and secret")
    account = choose_account(config, "ccv", args.account)
    # Into CCV's order, the receiver's log lines and its store: no secret of this config.
    secrets = given_secrets(config_secrets(config))
    if args.order is not None:
        (value,) = order_ids("ccv", [args.order], secrets)
        print(notification_url(receiver, account, order_id=value))
    else:
        ref = reference_given("--ref", args.ref, secrets)
        print(notification_url(receiver, account, reference=ref))
    return EX_OK


def _need_receiver(config: Config, problem: str) -> ReceiverConfig:
    """Refuse a command that signs notification URLs without [receiver]: the config's problem
    (exit 78, one `config error:` line naming the file), not a usage error."""
    if config.receiver is None:
        raise ConfigError(config.file, "receiver", problem)
    return config.receiver
