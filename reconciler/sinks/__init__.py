"""The sinks: where committed events go, and which ones a config names."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
