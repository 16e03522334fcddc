"""TOML configuration into frozen dataclasses, validated once; secrets from files, env or systemd."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


class ConfigError(Exception):
    """A configuration problem; str() is the one line `config error: <file>: <key>: <problem>`."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"config error: {file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


class Secret:
    """A credential that never shows itself in repr(), str() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself; call only where it goes on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class RetryConfig:
    """Retries of one request on 429, 5xx, timeouts and connection errors."""

    attempts: int = 3  # retries after the first try
    backoff_s: float = 0.5  # first delay, doubled per retry, jittered
    max_backoff_s: float = 30.0  # also the cap on a Retry-After we honour


@dataclass(frozen=True)
class ScheduleConfig:
    """Adaptive check schedule of one account (used by `run`)."""

    min_interval_s: float
    max_interval_s: float
    # orderStatus -> fixed interval, overriding the adaptive one
    status_intervals_s: dict[str, float] = field(default_factory=dict)
    # CCNow: how long `completed` / `refunded` orders are still watched, and how often
    watch_settled_s: float = 180 * 86400
    settled_interval_s: float = 86400
    # orders that answer 404 are checked this rarely
    not_found_interval_s: float = 86400


@dataclass(frozen=True)
class CCVConfig:
    """One CCV account (`[ccv]` or one `[[ccv]]` table)."""

    name: str
    base_url: str  # without trailing slash
    api_key: Secret
    poll_interval_s: float
    concurrency: int
    timeout_s: float
    retry: RetryConfig
    schedule: ScheduleConfig
    # How the key is sent: "basic" = HTTP Basic, key as user, empty password (CCV's scheme);
    # "bearer" = `Authorization: Bearer <key>`; "header" = the key as the value of `auth_header`.
    auth: Literal["basic", "bearer", "header"] = "basic"
    auth_header: str = "Authorization"


@dataclass(frozen=True)
class CCNowConfig:
    """One CCNow account (`[ccnow]` or one `[[ccnow]]` table)."""

    name: str
    url: str
    client_id: str
    password: Secret
    store_id: str  # "" when not used
    poll_interval_s: float
    batch_size: int
    concurrency: int  # batch posts in flight
    timeout_s: float
    retry: RetryConfig
    schedule: ScheduleConfig
    # secret path segment for CCNow's server notifications (receiver), None when not set
    notification_token: Secret | None = None


@dataclass(frozen=True)
class ReceiverConfig:
    """The notification receiver, /healthz and /metrics (used by `run`)."""

    listen_host: str
    listen_port: int
    public_url: str  # without trailing slash
    secret: Secret
    debounce_s: float = 2.0
    remember_ref_s: float = 7 * 86400  # how long an unknown external reference is remembered
    max_body_bytes: int = 64 * 1024


@dataclass(frozen=True)
class SinkConfig:
    """One `[[sinks]]` table. Fields that do not apply to `type` keep their defaults."""

    type: Literal["log", "jsonl", "webhook", "command"]
    name: str  # unique; defaults to the type, then type-2, type-3 ...
    path: Path | None = None  # jsonl
    url: str | None = None  # webhook
    secret: Secret | None = None  # webhook, `whsec_...`
    command: tuple[str, ...] = ()  # command: argv
    timeout_s: float = 15.0
    retry_min_s: float = 5.0
    retry_max_s: float = 3600.0
    max_age_s: float = 3 * 86400


@dataclass(frozen=True)
class AlertsConfig:
    """`[alerts]`: how long an order may stay in a status before `order.stuck`."""

    # (source, orderStatus) -> seconds
    stuck_after_s: dict[tuple[str, str], float] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    file: str  # where it was read from, for messages
    store_path: Path
    ccv: tuple[CCVConfig, ...]
    ccnow: tuple[CCNowConfig, ...]
    receiver: ReceiverConfig | None
    sinks: tuple[SinkConfig, ...]
    alerts: AlertsConfig


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError naming the key on any problem."""
    raise NotImplementedError
