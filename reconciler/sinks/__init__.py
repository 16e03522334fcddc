"""The sinks: where committed events go, and which ones a config names."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, TextIO

from ..config import (
    CommandSinkConfig,
    Config,
    JsonlSinkConfig,
    LogSinkConfig,
    SinkConfig,
    WebhookSinkConfig,
)

if TYPE_CHECKING:
    import aiohttp

    from .base import Sink


def sink_configs(config: Config) -> list[SinkConfig]:
    """Return the sinks events go to, in delivery order: the configured ones, after the
    built-in log sink when none of them is a log sink (the log sink is always there; the
    config refuses its name for a sink of another type)."""
    builtin = [] if any(s.type == "log" for s in config.sinks) else [LogSinkConfig(name="log")]
    return [*builtin, *config.sinks]


def sink_names(config: Config) -> list[str]:
    """Return the names of the sinks events go to, in delivery order."""
    return [s.name for s in sink_configs(config)]


def sink_target(sc: SinkConfig, salt: bytes) -> str:
    """Where a sink sends, for telling whether a sink name now sends elsewhere: its type and
    file or program, never a secret. A webhook's URL is all fingerprint (a host may be the
    capability: `https://<id>.lambda-url...`), as a command's arguments are; the fingerprint is
    keyed with the store's random `salt`, so that no guess of the secret can be checked
    against it."""
    if isinstance(sc, JsonlSinkConfig):
        return f"jsonl {sc.path}"
    if isinstance(sc, WebhookSinkConfig):
        return f"webhook #{_fingerprint(salt, sc.url)}"
    if isinstance(sc, CommandSinkConfig):
        return f"command {sc.command[0]} #{_fingerprint(salt, chr(0).join(sc.command))}"
    return sc.type


def target_change(was: str, now: str) -> tuple[str, str, str]:
    """What a log line may say of a sink name's target before and now, and how it changed:
    its type, file or program, never a fingerprint (nor any part of a webhook's URL)."""
    said = [
        t.rpartition(" #")[0] if t.startswith(("webhook ", "command ")) else t for t in (was, now)
    ]
    if said[0] != said[1]:
        change = "it sends elsewhere"
    elif said[0] == "webhook":
        change = "the webhook's URL changed"
    else:
        change = "the command's arguments changed"
    return said[0], said[1], change


def _fingerprint(salt: bytes, text: str) -> str:
    return hmac.new(salt, text.encode(), hashlib.sha256).hexdigest()[:16]


def build_sinks(
    config: Config, session: aiohttp.ClientSession, log: logging.StreamHandler[TextIO]
) -> list[tuple[Sink, SinkConfig]]:
    """Create the sinks events go to; the log sink writes through `log`, the handler of every
    other log line."""
    # Here, not at the top: a sink's module imports this package first. Each kind only when
    # the config has one: a catch-up to the log alone loads no webhook, file or program sink.
    from ..redact import config_secrets

    out: list[tuple[Sink, SinkConfig]] = []
    for sc in sink_configs(config):
        sink: Sink
        if isinstance(sc, JsonlSinkConfig):
            from .jsonl import JsonlSink

            sink = JsonlSink(sc)
        elif isinstance(sc, WebhookSinkConfig):
            from .webhook import WebhookSink

            sink = WebhookSink(sc, session)
        elif isinstance(sc, CommandSinkConfig):
            from .command import CommandSink

            sink = CommandSink(sc, config_secrets(config))
        else:
            from .log import LogSink

            sink = LogSink(sc.name, handler=log)
        out.append((sink, sc))
    return out
