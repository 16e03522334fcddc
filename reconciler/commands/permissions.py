"""Warnings about a config that loads: a file that holds a secret other users can read (as ssh
warns of keys), two accounts that are one provider account, a retention window of hours, a
webhook secret shorter than Standard Webhooks asks."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterable
from pathlib import Path

from ..config import Config, WebhookSinkConfig
from ..config.secret import WEBHOOK_KEY_MIN_BYTES, webhook_key
from ..logs import fields

log = logging.getLogger("reconciler.config")

_READABLE_BY_OTHERS = stat.S_IRGRP | stat.S_IROTH

# `[store] keep_events` is meant in days (README "Retention"): below one, what depends on the
# window (the feed's readers, references and idempotency keys refused as repeats) is cut short.
# Not refused: tests keep an hour, to see pruning.
SHORT_KEEP_S = 86400.0


def readable_by_others(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """Return (path, permission bits) of each file that its group or other users may read."""
    found: list[tuple[Path, int]] = []
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # the config loader read it a moment ago; nothing to warn about
        if mode & _READABLE_BY_OTHERS:
            found.append((path, stat.S_IMODE(mode)))
    return found


def warn_readable_secrets(paths: Iterable[Path]) -> None:
    """Log one warning per secret-holding file that others may read; never the secret."""
    for path, mode in readable_by_others(paths):
        log.warning(
            "config.secret_readable",
            extra=fields(
                file=str(path),
                mode=f"{mode:04o}",
                hint=f"holds a secret and is readable by others: chmod go-rwx {path}",
            ),
        )


def warn_same_accounts(config: Config) -> None:
    """Log one warning per account that is an earlier account's provider account again; never
    the secret that makes them one."""
    for source, account, earlier in config.same_provider_accounts():
        log.warning(
            "config.same_provider_account",
            extra=fields(
                source=source,
                account=account,
                same_as=earlier,
                hint=f"{source} accounts {earlier} and {account} are one provider account: "
                "every order of it is followed twice, with two events per change",
            ),
        )


def warn_short_retention(config: Config) -> None:
    """Log one warning when `[store] keep_events` is under a day."""
    if config.keep_events_s < SHORT_KEEP_S:
        log.warning(
            "config.keep_events_short",
            extra=fields(
                keep_events_s=config.keep_events_s,
                hint="[store] keep_events is under a day: delivered events, closed CCV submits "
                "and CCNow actions older than it are deleted, so a feed reader behind by more "
                "misses events, and a reference or idempotency key used before it is taken "
                'again as new; keep days ("400d", the default)',
            ),
        )


def warn_short_webhook_secrets(config: Config) -> None:
    """Log one warning per webhook sink whose key is under Standard Webhooks' 24 bytes: taken
    (receivers' libraries take it, and refusing it would stop a daemon that ran with it), but a
    key of a byte or a word signs events anyone can forge. Never the key, only its length."""
    for index, sink in enumerate(config.sinks):
        if not isinstance(sink, WebhookSinkConfig):
            continue
        size = len(webhook_key(sink.secret.reveal()))
        if size < WEBHOOK_KEY_MIN_BYTES:
            log.warning(
                "config.webhook_secret_short",
                extra=fields(
                    key=f"sinks[{index}].secret",
                    sink=sink.name,
                    bytes=size,
                    hint=f"Standard Webhooks asks for {WEBHOOK_KEY_MIN_BYTES} to 64 random bytes: "
                    "give the sink and its receiver a new secret, "
                    "printf 'whsec_%s' \"$(openssl rand -base64 32)\"",
                ),
            )
