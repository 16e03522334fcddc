"""`reconciler check [--online]`: the config is valid; online, one harmless request per account
proves the credentials."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from collections.abc import Awaitable
from pathlib import Path

from ..config import (
    CommandSinkConfig,
    Config,
    ConfigError,
    JsonlSinkConfig,
    default_store_path,
)
from ..config.where import NoCurrentDirectory
from ..exits import EX_CONFIG, EX_OK, EX_TEMPFAIL
from ..json_text import iso_time
from ..logs import say
from ..model import Source
from ..store import StoreError
from ..terminal import shown
from .permissions import (
    warn_readable_secrets,
    warn_same_accounts,
    warn_short_retention,
    warn_short_webhook_secrets,
)


async def check_command(config: Config, args: argparse.Namespace) -> int:
    """Config is valid when we get here; with --online, ask each provider once."""
    _check_store(config)
    _check_sinks(config)
    accounts = [f"ccv/{c.name}" for c in config.ccv] + [f"ccnow/{c.name}" for c in config.ccnow]
    summary = (
        f"config ok: {config.file} (accounts: {', '.join(accounts)}; store: {config.store_path})"
    )
    if not args.online:
        print(summary)
    warn_readable_secrets(config.secret_files)
    warn_same_accounts(config)
    warn_short_retention(config)
    warn_short_webhook_secrets(config)
    await _warn_unconfigured(config)
    if not args.online:
        return EX_OK
    worst = await check_online(config)
    # After the accounts' answers, and only when none refused the credentials: a config
    # whose credentials are refused is not ok (78), whatever stdout said before.
    if worst != EX_CONFIG:
        print(summary)
    return worst


def _check_store(config: Config) -> None:
    """Refuse, as a config error, a store path no process can use: a directory (`.`), a device
    (`/dev/null`), a path under a file or through a loop of links, and one this user may not
    create or write that is its own. `check` passed them and every other command refused them
    (74). One this user may not look at is not asked about, and one of another user's that it
    may not write is a warning: `check` may run as another user than the daemon."""
    from ..config.sinks import same_file
    from ..sinks.jsonl import path_problem
    from .store_writable import store_refusal, this_user

    path = config.store_path
    problem = path_problem(path, regular=True)
    if problem is None and same_file(path, Path(config.file)):
        # Every other command then refused it as no database (74). (same_file leaves a config
        # read from a descriptor, `<(...)`, out.)
        problem = f"{path} is this config file; the store needs a file of its own"
    if problem is None:
        problem = store_refusal(path, this_user())
    if problem is not None:
        if path == _default_store_path():
            problem += " (the default store path: [store] path is not set)"
        raise ConfigError(config.file, "store.path", problem)


def _default_store_path() -> Path | None:
    # The config loaded, so a store outside the current directory: deleted since, it is not.
    try:
        return default_store_path(os.environ)
    except NoCurrentDirectory:
        return None


def _check_sinks(config: Config) -> None:
    """Refuse, as a config error, a command sink whose program is not found here and a jsonl
    sink whose path is a directory or under a file: else each event is
    retried until max_age, then dead-lettered. Only `check` refuses them; the daemon says a
    missing program once (sink.program_missing) and the other commands do not care."""
    from ..sinks.command import program_problem
    from ..sinks.jsonl import path_problem

    for index, sink in enumerate(config.sinks):
        if isinstance(sink, CommandSinkConfig) and (problem := program_problem(sink.command)):
            raise ConfigError(config.file, f"sinks[{index}].command[0]", problem)
        if isinstance(sink, JsonlSinkConfig) and (problem := path_problem(sink.path)):
            raise ConfigError(config.file, f"sinks[{index}].path", problem)


async def _warn_unconfigured(config: Config) -> None:
    """Say which accounts of the store, and which sink names holding undelivered events, the
    config no longer names (poller/unconfigured.py): a sink's typo is seen before a start."""
    from ..poller import unconfigured as gone
    from ..store import gone_sinks
    from .store_open import peek_store

    # `check` judges the config, not the database: a store it cannot read says nothing here.
    # Opened read-only, without the writer's lock: beside a running daemon too.
    async with peek_store(config) as store:
        if store is None:
            return
        with contextlib.suppress(StoreError):
            gone.warn_unconfigured(await gone.unconfigured_accounts(config, store))
            # Found by the outbox's key: no configured sink's backlog is counted.
            sinks = await gone.unconfigured_sinks(config, store)
            since = await gone_sinks.read(store.conn)  # recorded by a start or prune alone
            gone.warn_unconfigured_sinks(sinks, config.keep_events_s, since, time.time())


async def check_online(config: Config) -> int:
    """Return 0 when every account answered, 78 when credentials were refused, else 75 (one
    unavailable, or resting at its provider's word: not asked)."""
    from ..redact import config_secrets
    from ..runtime import http_session
    from ..sources.ccnow import CCNowClient
    from ..sources.ccv import CCVClient
    from ..sources.errors import AuthenticationFailed, RestAsked, SourceError
    from ..sources.rest import AccountRest

    worst = EX_OK
    secrets = config_secrets(config)
    # Each account's rest, as the store records it (the daemon's, a catch-up's): its probe is
    # not sent within it, as no read of the account is (README "Retry-After of a read").
    rests: dict[tuple[Source, str], AccountRest] = {
        **{("ccv", c.name): AccountRest() for c in config.ccv},
        **{("ccnow", c.name): AccountRest() for c in config.ccnow},
    }
    for key, until in (await _recorded_rests(config)).items():
        if key in rests:
            rests[key].hold(until)
    async with http_session(config) as session:
        checks: list[tuple[str, Awaitable[object]]] = [
            (
                f"ccv/{c.name}",
                CCVClient(c, session, secrets=secrets, rest=rests["ccv", c.name]).probe(),
            )
            for c in config.ccv
        ]
        checks += [
            (f"ccnow/{c.name}", CCNowClient(c, session, rest=rests["ccnow", c.name]).pending_list())
            for c in config.ccnow
        ]
        for name, probe in checks:
            try:
                await probe
            except AuthenticationFailed as exc:
                say(f"{name}: credentials refused ({shown(str(exc))})")
                worst = EX_CONFIG
            except SourceError as exc:
                if isinstance(exc, RestAsked) and exc.held:  # nothing was sent
                    why = f"resting until {iso_time(exc.until)} at its provider's word: not asked"
                    say(f"{name}: {why}", logging.WARNING)
                else:
                    say(f"{name}: unavailable ({shown(str(exc))})", logging.WARNING)
                worst = max(worst, EX_TEMPFAIL) if worst != EX_CONFIG else worst
            else:
                print(f"{name}: ok")
    # A rest a probe was asked is said above and not recorded: `check` never writes the store
    # (run as root, it could leave files the daemon's user cannot open, or upgrade the store).
    return worst


async def _recorded_rests(config: Config) -> dict[tuple[Source, str], float]:
    """Return the accounts' rests the store records, read as the warnings are (none when it
    cannot be read: `check` may run as another user than the daemon)."""
    from .store_open import peek_store

    async with peek_store(config) as store:
        if store is None:
            return {}
        with contextlib.suppress(StoreError):
            states = await store.sources.states()
            return {(s.source, s.account): s.rest_until for s in states if s.rest_until}
    return {}
