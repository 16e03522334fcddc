"""TOML configuration into frozen dataclasses, validated once; secrets from files, env, systemd.

The package: `schema` (the dataclasses), `table` (reading one TOML table), `values` (pure rules
for single values), `secret` (Secret and where secrets are read from), `defaults` (choices
and default tables) and `loader` (`load_config`). Everything is importable from here.
"""

from __future__ import annotations

from .errors import ConfigError
from .loader import load_config
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
from .secret import Secret
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
    "ReceiverConfig",
    "RetryConfig",
    "ScheduleConfig",
    "Secret",
    "SinkConfig",
    "WebhookSinkConfig",
    "is_loopback",
    "load_config",
    "parse_duration",
]
