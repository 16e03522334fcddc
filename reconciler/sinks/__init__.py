"""The sinks: where committed events go, and which ones a config names."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

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


def sink_target(sc: SinkConfig) -> str:
    """Where a sink sends, for telling whether a sink name now sends elsewhere: its type and
    file, URL origin or program, never a secret (a webhook URL's path or query, a command's
    arguments may hold one: only a short fingerprint of them is kept)."""
    if isinstance(sc, JsonlSinkConfig):
        return f"jsonl {sc.path}"
    if isinstance(sc, WebhookSinkConfig):
        url = urlsplit(sc.url)
        origin = f"{url.scheme}://{url.hostname}{'' if url.port is None else f':{url.port}'}"
        return f"webhook {origin} #{_fingerprint(sc.url)}"
    if isinstance(sc, CommandSinkConfig):
        return f"command {sc.command[0]} #{_fingerprint(chr(0).join(sc.command))}"
    return sc.type


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_sinks(config: Config, session: aiohttp.ClientSession) -> list[tuple[Sink, SinkConfig]]:
    """Create the sinks events go to."""
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

            sink = LogSink(sc.name)
        out.append((sink, sc))
    return out
