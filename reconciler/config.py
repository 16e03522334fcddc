"""TOML configuration into frozen dataclasses, validated once; secrets from files, env, systemd."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import re
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

from .model import usd_amount


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
    api: ApiConfig | None = None
    # The config file itself when it holds a secret, and every `*_file` it names.
    secret_files: tuple[Path, ...] = ()
    # [store] keep_events: delivered history older than this is pruned (store_retention.py)
    keep_events_s: float = 400 * 86400.0


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError naming the key on any problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, "-", f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(file, "-", "not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "-", f"invalid TOML: {exc}") from None
    # Relative paths in the file mean "next to the file", whatever the daemon's cwd is later.
    return _Loader(file, Path(path).absolute().parent, os.environ).config(data)


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h|d)?")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float) -> float:
    """Return seconds from a number of seconds or a string like "500ms", "90s", "5m", "2h", "3d"."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        number, unit = float(match[1]), match[2] or "s"
        # Divide for ms so that "100ms" is exactly 0.1, not 100 * 0.001.
        seconds = number / 1000 if unit == "ms" else number * _UNIT_S[unit]
    if seconds is None:
        raise ValueError(
            f"invalid duration '{value}' (use seconds or a number with ms, s, m, h, d)"
        )
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"invalid duration '{value}' (must be finite and not negative)")
    return seconds


# --- the loader ------------------------------------------------------------------------------

_V = TypeVar("_V")
_C = TypeVar("_C", bound=str)
_A = TypeVar("_A")

_TOP_KEYS = ("store", "ccv", "ccnow", "receiver", "sinks", "alerts", "api")
_API_KEYS = ("listen", "token", "token_file", "max_body", "refresh_timeout", "ccv_order_id_fields")
_RETRY_KEYS = ("retries", "retry_backoff")
_SCHEDULE_KEYS = (
    "min_interval",
    "max_interval",
    "status_intervals",
    "not_found_interval",
    "active_window",
    "active_max_interval",
)
_CCV_KEYS = (
    "name",
    "base_url",
    "api_key",
    "api_key_file",
    "poll_interval",
    "concurrency",
    "timeout",
    "auth",
    "auth_header",
    "watch_settled",
    "settled_interval",
    *_RETRY_KEYS,
    *_SCHEDULE_KEYS,
)
_CCNOW_KEYS = (
    "name",
    "url",
    "client_id",
    "password",
    "password_file",
    "store_id",
    "poll_interval",
    "batch_size",
    "concurrency",
    "timeout",
    "watch_settled",
    "settled_interval",
    "notification_token",
    "notification_token_file",
    "max_adjust",
    *_RETRY_KEYS,
    *_SCHEDULE_KEYS,
)
_RECEIVER_KEYS = (
    "listen",
    "public_url",
    "secret",
    "secret_file",
    "debounce",
    "remember_ref",
    "max_body",
    "max_connections",
    "header_timeout",
)
_SINK_COMMON_KEYS = ("type", "name", "timeout", "retry_min", "retry_max", "max_age")
_SINK_KEYS: dict[str, tuple[str, ...]] = {
    "log": (),
    "jsonl": ("path",),
    "webhook": ("url", "secret", "secret_file"),
    "command": ("command",),
}
_SINK_TYPES: tuple[Literal["log", "jsonl", "webhook", "command"], ...] = (
    "log",
    "jsonl",
    "webhook",
    "command",
)
_AUTH_SCHEMES: tuple[Literal["basic", "bearer", "header"], ...] = ("basic", "bearer", "header")

_CCV_STATUS_INTERVALS = {"AwaitingPayment": "2m", "Incomplete": "6h"}
_STUCK_AFTER: dict[tuple[str, str], str] = {
    ("ccv", "AwaitingPayment"): "2d",
    ("ccv", "Incomplete"): "7d",
    ("ccv", "Screening"): "7d",
    ("ccv", "Processing"): "1d",
    ("ccnow", "pending"): "5d",
    ("ccnow", "paypal_hold"): "7d",
    ("ccnow", "vacation_hold"): "7d",
    ("ccnow", "preorder_hold"): "7d",
    ("ccnow", "getman_hold"): "7d",
    ("ccnow", "mark_shipped"): "3d",
    ("ccnow", "mark_canceled"): "3d",
}

_NAME = re.compile(r"[a-z0-9_-]{1,32}")
_NAME_RULE = "must be 1 to 32 characters of a-z 0-9 _ -"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_LISTEN_RULE = "expected host:port like 127.0.0.1:8080 or [::1]:8080 (port 1 to 65535)"

_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: bool is an int subclass
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
    (datetime, "datetime"),  # before date: datetime is a date subclass
    (date, "date"),
    (time, "time"),
)


def _type_name(value: object) -> str:
    """Name a parsed TOML value's type the way TOML does."""
    return next((name for kind, name in _TOML_TYPES if isinstance(value, kind)), "value")


def _env_word(name: str) -> str:
    """Spell an account or sink name as it appears inside an environment variable name."""
    return name.upper().replace("-", "_")


class _Table:
    """One TOML table being read; knows its dotted key so every error can name the key."""

    def __init__(
        self,
        loader: _Loader,
        data: Mapping[str, object],
        key: str,
        allowed: Collection[str] | None,
        unknown: str = "unknown key",
    ) -> None:
        self.loader = loader
        self.data = data
        self.key = key
        if allowed is not None:
            for name in data:
                if name not in allowed:
                    raise self.error(name, unknown)

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.loader.file, self.path(name), problem)

    def get(self, name: str, kind: type[_V], what: str) -> _V | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        raise self.error(name, f"expected {what}, got {_type_name(value)}")

    def string(self, name: str, default: str | None = None, *, allow_empty: bool = False) -> str:
        """A string; required when `default` is None."""
        value = self.get(name, str, "a string")
        if value is None:
            if default is None:
                raise self.error(name, "required")
            return default
        if not value and not allow_empty:
            raise self.error(name, "must not be empty")
        return value

    def choice(self, name: str, choices: tuple[_C, ...], default: _C | None = None) -> _C:
        value = self.string(name, default)
        for choice in choices:
            if value == choice:
                return choice
        raise self.error(name, f"must be one of {', '.join(choices)}")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name, int, "an integer")
        if value is None:
            return default
        if not low <= value <= high:
            raise self.error(name, f"must be between {low} and {high}")
        return value

    def duration(self, name: str, default: str | None, *, positive: bool = False) -> float:
        """Seconds from a duration key; required when `default` is None."""
        value = self.data.get(name, default)
        if value is None:
            raise self.error(name, "required")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.error(
                name,
                f'expected a duration (seconds or a string like "5m"), got {_type_name(value)}',
            )
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None
        if positive and seconds == 0:
            raise self.error(name, "must be greater than 0")
        return seconds

    def duration_range(
        self, low_name: str, low_default: str, high_name: str, high_default: str
    ) -> tuple[float, float]:
        """A (minimum, maximum) pair of positive durations."""
        low = self.duration(low_name, low_default, positive=True)
        high = self.duration(high_name, high_default, positive=True)
        if high < low:
            raise self.error(high_name, f"must not be less than {low_name}")
        return low, high

    def usd(self, name: str, default: str) -> Decimal:
        """A positive amount in USD with at most two decimals (a string or a number)."""
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.error(name, f"expected an amount in USD, got {_type_name(value)}")
        amount = usd_amount(str(value))
        if amount is None or amount <= 0:
            raise self.error(name, "must be an amount in USD above 0, at most 2 decimals")
        return amount

    def url(self, name: str) -> str:
        value = self.string(name)
        problem = _url_problem(value)
        if problem is not None:
            raise self.error(name, problem)
        return value

    def table(
        self, name: str, allowed: Collection[str] | None, unknown: str = "unknown key"
    ) -> _Table | None:
        value = self.get(name, dict, "a table")
        return (
            None if value is None else _Table(self.loader, value, self.path(name), allowed, unknown)
        )

    def status_durations(self, name: str, default: Mapping[str, str]) -> dict[str, float]:
        """A table of orderStatus -> positive duration; a given table replaces `default`."""
        table = self.table(name, None)
        if table is None:
            return {status: parse_duration(value) for status, value in default.items()}
        return {status: table.duration(status, None, positive=True) for status in table.data}


def _url_problem(url: str) -> str | None:
    """Why `url` cannot be used to talk to a provider or be handed out, or None."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return "invalid URL (whitespace or control character)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return "invalid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "expected an http(s) URL with a host"
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs; every secret has its own key.
        return "must not contain user:password"
    if parts.scheme == "http" and not is_loopback(host):
        return "https required (plain http only for loopback hosts)"
    return None


def is_loopback(host: str) -> bool:
    """Return whether a URL host is this machine (where plain http is acceptable)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_listen(value: str) -> tuple[str, int] | None:
    """Split "host:port" / "[v6]:port"; None when it is neither."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port):
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    elif ":" in host or "[" in host or "]" in host:
        return None
    number = int(port)
    return (host, number) if 1 <= number <= 65535 else None


def _min_length(length: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if len(value) >= length else f"must be at least {length} characters"

    return check


def _control_problem(value: str) -> str | None:
    # A newline in a key passes the config check and breaks the first request (or splits a
    # header): refuse it here, naming the key, never the value.
    if value.isprintable():
        return None
    return "must not contain a line break, control or invisible character"


def _token_problem(value: str) -> str | None:
    # The token is a URL path segment: keep it to characters that need no quoting.
    return None if _TOKEN.fullmatch(value) else "must be at least 16 characters of A-Z a-z 0-9 _ -"


def _webhook_secret_problem(value: str) -> str | None:
    body = value.removeprefix("whsec_")
    if body and body != value:
        try:
            base64.b64decode(body, validate=True)
            return None
        except (binascii.Error, ValueError):
            pass
    return "must be 'whsec_' followed by base64"


def _secret_names(source: str, name: str, single: bool, word: str) -> tuple[list[str], list[str]]:
    """Env variables and systemd credential names tried, in order, for an account's secret."""
    env: list[str] = []
    credentials: list[str] = []
    credential_word = word.replace("_", "-")
    if name != "default":
        env.append(f"RECONCILER_{source.upper()}_{_env_word(name)}_{word.upper()}")
        credentials.append(f"{source}-{name}-{credential_word}")
    # The plain names belong to the "default" account, or to the only one there is.
    if name == "default" or single:
        env.append(f"RECONCILER_{source.upper()}_{word.upper()}")
        credentials.append(f"{source}-{credential_word}")
    return env, credentials


class _Loader:
    """Turns the parsed TOML of one file into a Config, or raises the first ConfigError."""

    def __init__(self, file: str, base_dir: Path, env: Mapping[str, str]) -> None:
        self.file = file
        self.base_dir = base_dir
        self.env = env
        self.secret_files: dict[Path, None] = {}

    def config(self, data: Mapping[str, object]) -> Config:
        top = _Table(self, data, "", _TOP_KEYS)
        store = top.table("store", ("path", "keep_events"))
        store_path = self.store_path(store)
        ccv = self.accounts(top, "ccv", _CCV_KEYS, self.ccv)
        ccnow = self.accounts(top, "ccnow", _CCNOW_KEYS, self.ccnow)
        if not ccv and not ccnow:
            raise ConfigError(self.file, "ccv", "no [ccv] or [ccnow] account configured")
        receiver = top.table("receiver", _RECEIVER_KEYS)
        return Config(
            file=self.file,
            store_path=store_path,
            ccv=ccv,
            ccnow=ccnow,
            receiver=None if receiver is None else self.receiver(receiver),
            sinks=self.sinks(top),
            alerts=self.alerts(top.table("alerts", ("stuck_after",))),
            api=self.api(top.table("api", _API_KEYS)),
            secret_files=tuple(self.secret_files),
            keep_events_s=Config.keep_events_s
            if store is None
            else store.duration("keep_events", "400d", positive=True),
        )

    def file_path(self, table: _Table, name: str) -> Path:
        return self.base_dir / table.string(name)

    def store_path(self, store: _Table | None) -> Path:
        if store is not None and "path" in store.data:
            return self.file_path(store, "path")
        # systemd's StateDirectory= may list several directories; the first is ours.
        state = self.env.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(state or Path.cwd()) / "reconciler.db"

    # --- secrets

    def secret(
        self,
        table: _Table,
        key: str,
        env: list[str],
        credentials: list[str],
        check: Callable[[str], str | None] | None = None,
    ) -> Secret:
        found = self.optional_secret(table, key, env, credentials, check)
        if found is None:
            raise table.error(
                key,
                f"required (or {key}_file, env {' or '.join(env)}, "
                f"credential {' or '.join(credentials)})",
            )
        return found

    def optional_secret(
        self,
        table: _Table,
        key: str,
        env: list[str],
        credentials: list[str],
        check: Callable[[str], str | None] | None = None,
    ) -> Secret | None:
        """Resolve a secret: the key, then `<key>_file`, then env, then $CREDENTIALS_DIRECTORY."""
        file_key = f"{key}_file"
        if key in table.data and file_key in table.data:
            raise table.error(key, f"give {key} or {file_key}, not both")
        found = self.find_secret(table, key, env, credentials)
        if found is None:
            return None
        # Problems name where the value came from, never the value.
        value, error_key, origin = found
        problem = (
            "must not be empty"
            if not value
            else _control_problem(value) or (check(value) if check else None)
        )
        if problem is not None:
            raise table.error(error_key, problem + origin)
        return Secret(value)

    def find_secret(
        self, table: _Table, key: str, env: list[str], credentials: list[str]
    ) -> tuple[str, str, str] | None:
        """(value, key to blame, where from) of the first source that has the secret."""
        value = table.get(key, str, "a string")
        if value is not None:
            self.secret_files[Path(self.file)] = None
            return value, key, ""
        file_key = f"{key}_file"
        if file_key in table.data:
            path = self.file_path(table, file_key)
            self.secret_files[path] = None
            return self.read_secret(path, table, file_key), file_key, ""
        for name in env:
            if name in self.env:
                return self.env[name], key, f" (from env {name})"
        directory = self.env.get("CREDENTIALS_DIRECTORY")
        if directory:
            for name in credentials:
                path = Path(directory) / name
                if path.exists():
                    origin = f" (from credential {name})"
                    return self.read_secret(path, table, key, origin), key, origin
        return None

    def read_secret(self, path: Path, table: _Table, key: str, origin: str = "") -> str:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problem = f"cannot read: {exc.strerror or type(exc).__name__}{origin}"
            raise table.error(key, problem) from None
        except UnicodeDecodeError:
            # The codec's message quotes bytes of the file: never show it.
            raise table.error(key, f"not UTF-8 text{origin}") from None
        # One line end, as `echo` writes it; anything more is refused as part of the secret.
        return text.removesuffix("\n").removesuffix("\r")

    # --- accounts

    def accounts(
        self,
        top: _Table,
        source: str,
        allowed: Collection[str],
        parse: Callable[[_Table, str, bool], _A],
    ) -> tuple[_A, ...]:
        """Read `[source]` or `[[source]]`: one table, or several with unique names."""
        raw = top.data.get(source)
        if raw is None:
            return ()
        if isinstance(raw, dict):
            tables = [_Table(self, raw, source, allowed)]
        elif isinstance(raw, list):
            tables = []
            for index, item in enumerate(raw):
                key = f"{source}[{index}]"
                if not isinstance(item, dict):
                    raise ConfigError(self.file, key, f"expected a table, got {_type_name(item)}")
                tables.append(_Table(self, item, key, allowed))
        else:
            raise top.error(source, f"expected a table or array of tables, got {_type_name(raw)}")
        names: list[str] = []
        seen: dict[str, str] = {}
        for table in tables:
            if "name" in table.data:
                name = self.name(table, seen)
            elif len(tables) > 1:
                raise table.error("name", f"required when there are several [[{source}]] tables")
            else:
                name = "default"
            names.append(name)
        single = len(tables) == 1
        return tuple(parse(table, name, single) for table, name in zip(tables, names, strict=True))

    def name(self, table: _Table, seen: dict[str, str]) -> str:
        """An explicit account or sink name, unique also in its env-variable spelling."""
        name = table.string("name")
        if not _NAME.fullmatch(name):
            raise table.error("name", _NAME_RULE)
        other = seen.get(_env_word(name))
        if other == name:
            raise table.error("name", f"duplicate name '{name}'")
        if other is not None:
            raise table.error("name", f"'{name}' and '{other}' share env variable names")
        seen[_env_word(name)] = name
        return name

    def ccv(self, table: _Table, name: str, single: bool) -> CCVConfig:
        env, credentials = _secret_names("ccv", name, single, "api_key")
        base_url = table.url("base_url").rstrip("/")
        api_key = self.secret(table, "api_key", env, credentials)
        auth_header = table.string("auth_header", "Authorization")
        if not _HEADER_NAME.fullmatch(auth_header):
            raise table.error("auth_header", "not a valid HTTP header name")
        return CCVConfig(
            name=name,
            base_url=base_url,
            api_key=api_key,
            poll_interval_s=table.duration("poll_interval", "5m", positive=True),
            concurrency=table.integer("concurrency", 8, 1, 256),
            timeout_s=table.duration("timeout", "10s", positive=True),
            retry=self.retry(table),
            schedule=replace(
                self.schedule(table, "1m", _CCV_STATUS_INTERVALS),
                watch_settled_s=table.duration("watch_settled", "180d"),
                settled_interval_s=table.duration("settled_interval", "1d", positive=True),
            ),
            auth=table.choice("auth", _AUTH_SCHEMES, "basic"),
            auth_header=auth_header,
        )

    def schedule(
        self, table: _Table, min_default: str, status_defaults: Mapping[str, str]
    ) -> ScheduleConfig:
        """Read the adaptive schedule keys that both providers' accounts have."""
        min_interval, max_interval = table.duration_range(
            "min_interval", min_default, "max_interval", "6h"
        )
        return ScheduleConfig(
            min_interval_s=min_interval,
            max_interval_s=max_interval,
            status_intervals_s=table.status_durations("status_intervals", status_defaults),
            not_found_interval_s=table.duration("not_found_interval", "1d", positive=True),
            active_window_s=table.duration("active_window", "12h"),
            active_max_interval_s=table.duration("active_max_interval", "30m", positive=True),
        )

    def ccnow(self, table: _Table, name: str, single: bool) -> CCNowConfig:
        env, credentials = _secret_names("ccnow", name, single, "password")
        token_env, token_credentials = _secret_names("ccnow", name, single, "notification_token")
        url = table.url("url")
        client_id = table.string("client_id")
        password = self.secret(table, "password", env, credentials)
        return CCNowConfig(
            name=name,
            url=url,
            client_id=client_id,
            password=password,
            store_id=table.string("store_id", "", allow_empty=True),
            poll_interval_s=table.duration("poll_interval", "2m", positive=True),
            batch_size=table.integer("batch_size", 25, 1, 100),
            concurrency=table.integer("concurrency", 2, 1, 16),
            timeout_s=table.duration("timeout", "15s", positive=True),
            retry=self.retry(table),
            schedule=replace(
                self.schedule(table, "2m", {}),
                watch_settled_s=table.duration("watch_settled", "180d"),
                settled_interval_s=table.duration("settled_interval", "1d", positive=True),
            ),
            notification_token=self.optional_secret(
                table, "notification_token", token_env, token_credentials, _token_problem
            ),
            max_adjust=table.usd("max_adjust", "100.00"),
        )

    def retry(self, table: _Table) -> RetryConfig:
        return RetryConfig(
            attempts=table.integer("retries", 3, 0, 10),
            backoff_s=table.duration("retry_backoff", "0.5s"),
        )

    # --- receiver, sinks, alerts

    def receiver(self, table: _Table) -> ReceiverConfig:
        listen = _parse_listen(table.string("listen", "127.0.0.1:8080"))
        if listen is None:
            raise table.error("listen", _LISTEN_RULE)
        return ReceiverConfig(
            listen_host=listen[0],
            listen_port=listen[1],
            public_url=table.url("public_url").rstrip("/"),
            secret=self.secret(
                table,
                "secret",
                ["RECONCILER_RECEIVER_SECRET"],
                ["receiver-secret"],
                _min_length(16),
            ),
            debounce_s=table.duration("debounce", "2s"),
            remember_ref_s=table.duration("remember_ref", "7d"),
            max_body_bytes=table.integer("max_body", 64 * 1024, 1024, 16 * 1024 * 1024),
            max_connections=(
                table.integer("max_connections", 0, 1, 100_000)
                if "max_connections" in table.data
                else None
            ),
            header_timeout_s=table.duration("header_timeout", "10s", positive=True),
        )

    def api(self, table: _Table | None) -> ApiConfig | None:
        if table is None:
            return None
        listen = _parse_listen(table.string("listen", "127.0.0.1:8081"))
        if listen is None:
            raise table.error("listen", _LISTEN_RULE)
        fields = table.get("ccv_order_id_fields", list, "an array of strings")
        if fields is not None and (not fields or not all(isinstance(f, str) and f for f in fields)):
            raise table.error("ccv_order_id_fields", "expected a non-empty array of field names")
        return ApiConfig(
            listen_host=listen[0],
            listen_port=listen[1],
            token=self.secret(
                table, "token", ["RECONCILER_API_TOKEN"], ["api-token"], _min_length(16)
            ),
            max_body_bytes=table.integer("max_body", 1024 * 1024, 1024, 16 * 1024 * 1024),
            refresh_timeout_s=table.duration("refresh_timeout", "10s", positive=True),
            ccv_order_id_fields=tuple(fields) if fields else ("orderId", "id"),
        )

    def sinks(self, top: _Table) -> tuple[SinkConfig, ...]:
        raw = top.data.get("sinks")
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise top.error(
                "sinks", f"expected an array of tables ([[sinks]]), got {_type_name(raw)}"
            )
        typed: list[tuple[_Table, Literal["log", "jsonl", "webhook", "command"]]] = []
        for index, item in enumerate(raw):
            key = f"sinks[{index}]"
            if not isinstance(item, dict):
                raise ConfigError(self.file, key, f"expected a table, got {_type_name(item)}")
            table = _Table(self, item, key, None)
            kind = table.choice("type", _SINK_TYPES)
            own = _SINK_COMMON_KEYS + _SINK_KEYS[kind]
            for name in item:
                if name in own:
                    continue
                if any(name in keys for keys in _SINK_KEYS.values()):
                    raise table.error(name, f"not a key of a {kind} sink")
                raise table.error(name, "unknown key")
            typed.append((table, kind))
        # Explicit names first, so that a default name steps aside instead of clashing.
        seen: dict[str, str] = {}
        explicit = {id(table): self.name(table, seen) for table, _ in typed if "name" in table.data}
        sinks = []
        for table, kind in typed:
            name = explicit.get(id(table))
            if name is None:
                name, number = kind, 2
                while _env_word(name) in seen:
                    name, number = f"{kind}-{number}", number + 1
                seen[_env_word(name)] = name
            sinks.append(self.sink(table, kind, name))
        return tuple(sinks)

    def sink(
        self,
        table: _Table,
        kind: Literal["log", "jsonl", "webhook", "command"],
        name: str,
    ) -> SinkConfig:
        path = self.file_path(table, "path") if kind == "jsonl" else None
        url = secret = None
        if kind == "webhook":
            url = table.url("url")
            env = [f"RECONCILER_SINK_{_env_word(name)}_SECRET"]
            secret = self.secret(
                table, "secret", env, [f"sink-{name}-secret"], _webhook_secret_problem
            )
        command = self.command(table) if kind == "command" else ()
        timeout = table.duration("timeout", "15s", positive=True)
        retry_min, retry_max = table.duration_range("retry_min", "5s", "retry_max", "1h")
        return SinkConfig(
            type=kind,
            name=name,
            path=path,
            url=url,
            secret=secret,
            command=command,
            timeout_s=timeout,
            retry_min_s=retry_min,
            retry_max_s=retry_max,
            max_age_s=table.duration("max_age", "3d", positive=True),
        )

    def command(self, table: _Table) -> tuple[str, ...]:
        value = table.data.get("command")
        if value is None:
            raise table.error("command", "required")
        if not isinstance(value, list):
            raise table.error(
                "command", f"expected a list of strings (argv), got {_type_name(value)}"
            )
        if not value:
            raise table.error("command", "must not be empty")
        for index, arg in enumerate(value):
            if not isinstance(arg, str):
                raise table.error(f"command[{index}]", f"expected a string, got {_type_name(arg)}")
        if not value[0]:
            raise table.error("command[0]", "must not be empty")
        return tuple(value)

    def alerts(self, table: _Table | None) -> AlertsConfig:
        stuck = {key: parse_duration(value) for key, value in _STUCK_AFTER.items()}
        stuck_after = (
            None
            if table is None
            else table.table("stuck_after", ("ccv", "ccnow"), "unknown source (use ccv or ccnow)")
        )
        if stuck_after is not None:
            for source in ("ccv", "ccnow"):
                statuses = stuck_after.table(source, None)
                if statuses is not None:
                    for status in statuses.data:
                        stuck[(source, status)] = statuses.duration(status, None)
        # 0 switches the alert off for that status.
        return AlertsConfig({key: seconds for key, seconds in stuck.items() if seconds > 0})
