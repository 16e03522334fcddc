"""TOML configuration into frozen dataclasses, validated once; secrets from files, env, systemd.

The package: `schema` (the dataclasses), `table` (reading one TOML table; the keys its reader
asks for are the table's keys, any other is refused as unknown), `values` (pure rules for
single values), `secret` (Secret and where secrets are read from), `files` (reading the config
and secret files, bounded), `keys` (the words some keys take, and defaults that are tables),
`names` (account and sink names), `statuses` (status words as keys), `sinks` (the `[[sinks]]`
tables), `where` (which file a command reads) and `loader` (`load_config`: the file, its
accounts, receiver, API and alerts). Everything is importable from here.
"""

from __future__ import annotations

from .errors import ConfigError
from .loader import default_store_path, load_config
from .schema import (
    AlertsConfig,
    ApiConfig,
    CCNowConfig,
    CCVConfig,
    CommandSinkConfig,
    Config,
    JsonlSinkConfig,
    LogSinkConfig,
    ReceiverConfig,
    RetryConfig,
    ScheduleConfig,
    SinkConfig,
    WebhookSinkConfig,
)
from .secret import MissingSecret, Secret
from .values import is_loopback, parse_duration

__all__ = [
    "AlertsConfig",
    "ApiConfig",
    "CCNowConfig",
    "CCVConfig",
    "CommandSinkConfig",
    "Config",
    "ConfigError",
    "JsonlSinkConfig",
    "LogSinkConfig",
    "MissingSecret",
    "ReceiverConfig",
    "RetryConfig",
    "ScheduleConfig",
    "Secret",
    "SinkConfig",
    "WebhookSinkConfig",
    "default_store_path",
    "is_loopback",
    "load_config",
    "parse_duration",
]
