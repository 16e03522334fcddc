"""The configuration as frozen dataclasses, validated once by the loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from .secret import Secret


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
    # An order whose status changed within `active_window_s` (not counting its first sight)
    # is checked at least every `active_max_interval_s`: orders that move tend to move again.
    active_window_s: float = 12 * 3600
    active_max_interval_s: float = 30 * 60


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
    # the largest discount one `adjust` may give, in USD (a typo must not refund a whole order)
    max_adjust: Decimal = Decimal("100.00")


@dataclass(frozen=True)
class ReceiverConfig:
    """The notification receiver, /healthz and /metrics (used by `run`)."""

    listen_host: str
    listen_port: int
    public_url: str  # without trailing slash
    secret: Secret
    # While a new secret is rolled out: URLs signed with this one are still accepted.
    previous_secret: Secret | None = None
    debounce_s: float = 2.0
    remember_ref_s: float = 7 * 86400  # how long an unknown external reference is remembered
    max_body_bytes: int = 64 * 1024
    # None: half the open-file limit, at most 1000 (see connections.connection_cap)
    max_connections: int | None = None
    header_timeout_s: float = 10.0  # for a request head, an idle connection, and a body


@dataclass(frozen=True)
class ApiConfig:
    """`[api]`: the integration API for the integrator's own application (used by `run`)."""

    listen_host: str
    listen_port: int
    token: Secret
    max_body_bytes: int = 1024 * 1024
    refresh_timeout_s: float = 10.0  # `?refresh=1` waits for the provider at most this long
    # Where a CCV submit answer carries the new order's id; undocumented, so configurable.
    ccv_order_id_fields: tuple[str, ...] = ("orderId", "id")

    def url(self, path: str) -> str:
        """Return the URL of `path` on this API, as a command on the same host calls it."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"http://{host}:{self.listen_port}{path}"


@dataclass(frozen=True, kw_only=True)
class _SinkDelivery:
    """What every `[[sinks]]` table has: its name and how deliveries are retried."""

    name: str  # unique; defaults to the type, then type-2, type-3 ...
    timeout_s: float = 15.0
    retry_min_s: float = 5.0
    retry_max_s: float = 3600.0
    max_age_s: float = 3 * 86400


@dataclass(frozen=True, kw_only=True)
class LogSinkConfig(_SinkDelivery):
    """A `log` sink: events as log lines."""

    type: Literal["log"] = "log"


@dataclass(frozen=True, kw_only=True)
class JsonlSinkConfig(_SinkDelivery):
    """A `jsonl` sink: events appended to a file."""

    path: Path
    type: Literal["jsonl"] = "jsonl"


@dataclass(frozen=True, kw_only=True)
class WebhookSinkConfig(_SinkDelivery):
    """A `webhook` sink: events POSTed to `url`, signed with `secret` (`whsec_...`)."""

    url: str
    secret: Secret
    type: Literal["webhook"] = "webhook"


@dataclass(frozen=True, kw_only=True)
class CommandSinkConfig(_SinkDelivery):
    """A `command` sink: `command` (argv) run once per event."""

    command: tuple[str, ...]
    type: Literal["command"] = "command"

    def __post_init__(self) -> None:
        # The loader refuses an empty command too; this holds for configs built in code.
        if not self.command:
            raise ValueError(f"command sink {self.name!r} needs a command")


# One `[[sinks]]` table; `type` tells the kinds apart.
SinkConfig = LogSinkConfig | JsonlSinkConfig | WebhookSinkConfig | CommandSinkConfig


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
    api: ApiConfig | None = None
    # The config file itself when it holds a secret, and every `*_file` it names.
    secret_files: tuple[Path, ...] = ()
    # [store] keep_events: delivered history older than this is pruned (store/retention.py)
    keep_events_s: float = 400 * 86400.0
    # What is made of its secrets once and shared by every holder of this config
    # (redact.config_secrets keeps their Secrets here, and those keep each search made of
    # them: one costs milliseconds). Not passed on by `replace`: that config may hold others.
    kept: dict[str, object] = field(default_factory=dict, init=False, compare=False, repr=False)

    def schedules(self) -> dict[tuple[str, str], ScheduleConfig]:
        """Return each configured account's schedule, by (source, account)."""
        return {
            **{("ccv", a.name): a.schedule for a in self.ccv},
            **{("ccnow", a.name): a.schedule for a in self.ccnow},
        }

    def same_provider_accounts(self) -> list[tuple[str, str, str]]:
        """Return (source, account, the earlier account it is) for each account that is one
        provider account with an earlier one: CCV's base URL and key, CCNow's URL, login,
        password and store. Not refused (tests run several accounts against one sandbox),
        but each such account follows every order again, with its own events."""
        logins: list[tuple[str, str, object]] = [
            ("ccv", a.name, (a.base_url.rstrip("/"), a.api_key)) for a in self.ccv
        ]
        logins += [
            ("ccnow", a.name, (a.url.rstrip("/"), a.client_id, a.password, a.store_id))
            for a in self.ccnow
        ]
        first: dict[tuple[str, object], str] = {}
        same = []
        for source, name, login in logins:
            if (earlier := first.setdefault((source, login), name)) != name:
                same.append((source, name, earlier))
        return same

    def watch_settled(self) -> dict[tuple[str, str], float]:
        """Return each configured account's `watch_settled`, by (source, account)."""
        return {key: s.watch_settled_s for key, s in self.schedules().items()}
