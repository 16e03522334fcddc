"""TOML configuration into frozen dataclasses, validated once; secrets from files, env, systemd.

The package: `schema` (the dataclasses), `table` (reading one TOML table; the keys a table may
hold are those its reader asks for, learnt by running the reader on a KeyCensus and checked
before the table is read), `values` (pure rules for single values), `secret` (Secret and where
secrets are read from), `keys` (the words some keys take, and defaults that are tables),
`names` (account and sink names), `statuses` (status words as keys), `sinks` (the `[[sinks]]`
tables), `where` (which file a command reads), `load` (`load_config`: the file, bounded, as
TOML) and `loader` (the file's tables: store, accounts, receiver, API and alerts). Everything
is importable from here."""

from __future__ import annotations

from .errors import ConfigError
from .load import load_config
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
from .where import default_store_path

__all__ = (
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
)
