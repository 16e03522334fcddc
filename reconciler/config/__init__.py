"""TOML configuration into frozen dataclasses, validated once; secrets from files, env, systemd.

The package: `schema` (the dataclasses), `table` (reading one TOML table), `values` (pure rules
for single values), `secret` (Secret and where secrets are read from), `files` (reading the
config and secret files, bounded), `keys` (the keys each table may hold), `names` (account and
sink names), `statuses` (status words as keys), `sinks` (the `[[sinks]]` tables), `where`
(which file a command reads) and `loader` (`load_config`: the file, its accounts, receiver,
API and alerts). Everything is importable
from here.
"""

from __future__ import annotations

from . import keys as _keys
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

# The key lists, as the example-config test reads them.
_TOP_KEYS = _keys.TOP_KEYS
_CCV_KEYS = _keys.CCV_KEYS
_CCNOW_KEYS = _keys.CCNOW_KEYS
_RECEIVER_KEYS = _keys.RECEIVER_KEYS
_API_KEYS = _keys.API_KEYS
_SINK_COMMON_KEYS = _keys.SINK_COMMON_KEYS
_SINK_KEYS = _keys.SINK_KEYS
