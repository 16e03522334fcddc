"""Turns the parsed TOML of one file into a validated Config, or the first ConfigError naming
the key."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from ..model import SOURCES, Source
from ..stdio import names_a_descriptor
from .errors import ConfigError
from .keys import AUTH_SCHEMES, CCV_STATUS_INTERVALS, STUCK_AFTER
from .names import unique_name
from .schema import (
    AlertsConfig,
    ApiConfig,
    CCNowConfig,
    CCVConfig,
    Config,
    ReceiverConfig,
    RetryConfig,
    ScheduleConfig,
)
from .secret import (
    SecretReader,
    api_token_problem,
    header_key_problem,
    inline_secrets,
    min_length,
    secret_names,
    sent_problem,
    token_problem,
)
from .sinks import SinkReader, secret_key
from .table import KeyCensus, Table, control_problem, file_path
from .values import may_be_one_address, parse_duration, parse_listen, type_name
from .where import GONE, NoCurrentDirectory, default_store_path

_A = TypeVar("_A")

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers that cannot carry the key: HTTP's own framing, routing and hop-by-hop headers (a proxy
# drops or acts on them; a key in Content-Length breaks the request), and those reconciler sets
# itself on a CCV request (a submit's Content-Type would replace the key).
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "te", "trailer", "expect", "upgrade"}
    | {"connection", "keep-alive", "proxy-connection", "proxy-authorization"}
    | {"proxy-authenticate", "content-type", "content-encoding", "accept", "user-agent"}
)
# The shortest interval between requests to a provider: "1ms" made thousands of requests a
# second. Not a second: the example config shows 0.5 and "500ms", and configs held them.
_FLOOR = "100ms"
_LISTEN_RULE = "expected host:port like 127.0.0.1:8080 or [::1]:8080 (port 1 to 65535)"


class Loader:
    """Turns the parsed TOML of one file into a Config, or raises the first ConfigError."""

    def __init__(
        self,
        file: str,
        base_dir: Path,
        env: Mapping[str, str],
        *,
        secrets_optional: bool = False,
        census: bool = False,
    ) -> None:
        self.file = file
        self.base_dir = base_dir
        self.env = env
        # A census of a table's keys reads a table with nothing given, no environment and no
        # file: it asks for no directory, file or link (a deleted cwd failed every load, and a
        # stand-in path was judged against the real store's files).
        self.census = census
        self.secrets = SecretReader(file, base_dir, env, optional=secrets_optional)

    def config(self, data: Mapping[str, object]) -> Config:
        self.secrets.known |= inline_secrets(dict(data))
        top = Table(self.file, data, "")
        top.only(self.keys(Loader.read))
        return self.read(top)

    def keys(self, read: Callable[[Loader, KeyCensus], object]) -> frozenset[str]:
        """The keys `read` asks for, on a table with nothing given: what a table it reads may
        hold. Asked of a census loader of its own, with no environment, so that nothing is
        found and nothing on disk is looked at."""
        census = KeyCensus(self.file)
        read(Loader(self.file, self.base_dir, {}, secrets_optional=True, census=True), census)
        return census.asked

    def table(
        self, top: Table, name: str, read: Callable[[Loader, KeyCensus], object]
    ) -> Table | None:
        """The table `name` of `top`, its keys checked against those `read` asks for."""
        table = top.table(name)
        if table is not None:
            table.only(self.keys(read))
        return table

    def read(self, top: Table) -> Config:
        """Read the file's top table; afterwards it and each table within it know the keys
        that were asked for."""
        store = self.table(top, "store", Loader.store)
        store_path = self.store_path(store)
        ccv = self.accounts(top, "ccv", Loader.ccv)
        ccnow = self.accounts(top, "ccnow", Loader.ccnow)
        if not ccv and not ccnow:
            top.refuse("ccv", "no [ccv] or [ccnow] account configured")
        receiver_table = self.table(top, "receiver", Loader.receiver)
        receiver = None if receiver_table is None else self.receiver(receiver_table)
        api = self.api(self.table(top, "api", Loader.api))
        if receiver is not None and api is not None and _same_port(receiver, api):
            # Caught here, not by the receiver failing to bind (exit 75, restarted forever).
            host = f"[{api.listen_host}]" if ":" in api.listen_host else api.listen_host
            problem = f"{host}:{api.listen_port} is [receiver] listen's port too"
            if receiver.listen_host != api.listen_host:
                # A name is not resolved here (it may resolve otherwise where the daemon runs).
                problem += f", and its host '{receiver.listen_host}' may be the same address"
            raise ConfigError(self.file, "api.listen", problem)
        sinks = SinkReader(
            self.file,
            self.base_dir,
            self.secrets,
            store_path=store_path,
            config_path=None if self.census or names_a_descriptor(self.file) else Path(self.file),
            census=self.census,
        ).sinks(top)
        if not self.census and (key := secret_key(self.secrets, store_path)) is not None:
            # Every command then refused it as no database (74), leaving a `.lock` beside it.
            problem = f"{store_path} is the file {key} names; the store needs a file of its own"
            raise ConfigError(self.file, "store.path", problem)
        alerts = self.alerts(self.table(top, "alerts", Loader.alerts))
        return Config(
            file=self.file,
            store_path=store_path,
            ccv=ccv,
            ccnow=ccnow,
            receiver=receiver,
            sinks=sinks,
            alerts=alerts,
            api=api,
            secret_files=tuple(self.secrets.secret_files),
            keep_events_s=self.keep_events(store),
        )

    def store(self, table: Table) -> tuple[Path, float]:
        """Read the `[store]` table (its keys, as `read` reads them in turn)."""
        return self.store_path(table), self.keep_events(table)

    def store_path(self, store: Table | None) -> Path:
        if store is not None and store.has("path"):
            return file_path(self.base_dir, store, "path", look=not self.census)
        if self.census:
            return self.base_dir / "census"  # a stand-in, never opened: no cwd, no environment
        try:
            return default_store_path(self.env)
        except NoCurrentDirectory:
            # A traceback (exit 70) before: the default is no file that could be made.
            problem = f"not set, and the default ./reconciler.db is in {GONE}: set [store] path"
            raise ConfigError(self.file, "store.path", problem) from None

    def keep_events(self, store: Table | None) -> float:
        if store is None:
            return Config.keep_events_s
        return store.duration("keep_events", "400d", positive=True)

    # --- accounts

    def accounts(
        self,
        top: Table,
        source: str,
        parse: Callable[[Loader, Table, str, bool], _A],
    ) -> tuple[_A, ...]:
        """Read `[source]` or `[[source]]`: one table, or several with unique names."""
        raw = top.value(source)
        if raw is None:
            return ()
        keys = self.keys(
            lambda loader, table: (table.has("name"), parse(loader, table, "default", True))
        )
        if isinstance(raw, dict):
            tables = [top.child(source, raw)]
            tables[0].only(keys)
        elif isinstance(raw, list):
            tables = []
            for index, item in enumerate(raw):
                key = f"{source}[{index}]"
                if not isinstance(item, dict):
                    raise ConfigError(self.file, key, f"expected a table, got {type_name(item)}")
                tables.append(top.child(key, item))
                tables[-1].only(keys)
        else:
            raise top.error(source, f"expected a table or array of tables, got {type_name(raw)}")
        names: list[str] = []
        seen: dict[str, str] = {}
        for table in tables:
            if table.has("name"):
                name = unique_name(table, seen)
            elif len(tables) > 1:
                raise table.error("name", f"required when there are several [[{source}]] tables")
            else:
                name = "default"
            names.append(name)
        single = len(tables) == 1
        return tuple(
            parse(self, table, name, single) for table, name in zip(tables, names, strict=True)
        )

    def ccv(self, table: Table, name: str, single: bool) -> CCVConfig:
        env, credentials = secret_names("ccv", name, single, "api_key")
        base_url = table.url("base_url", base=True).rstrip("/")
        auth = table.choice("auth", AUTH_SCHEMES, "basic")
        check = sent_problem if auth == "basic" else header_key_problem
        api_key = self.secrets.required(table, "api_key", env, credentials, check)
        auth_header = table.string("auth_header", "Authorization")
        if not _HEADER_NAME.fullmatch(auth_header):
            raise table.error("auth_header", "not a valid HTTP header name")
        if auth_header.lower() in _RESERVED_HEADERS:
            raise table.error(
                "auth_header",
                f"'{auth_header}' cannot carry the key: HTTP or reconciler itself uses it",
            )
        return CCVConfig(
            name=name,
            base_url=base_url,
            api_key=api_key,
            poll_interval_s=table.duration("poll_interval", "5m", positive=True, at_least=_FLOOR),
            concurrency=table.integer("concurrency", 8, 1, 256),
            timeout_s=table.timeout("timeout", "10s"),
            retry=self.retry(table),
            schedule=replace(
                self.schedule(table, "ccv", "1m", CCV_STATUS_INTERVALS),
                # 0 is meant: a settled status taken as final (README "The schedule").
                watch_settled_s=table.duration("watch_settled", "180d"),
                settled_interval_s=table.duration(
                    "settled_interval", "1d", positive=True, at_least=_FLOOR
                ),
            ),
            auth=auth,
            auth_header=auth_header,
        )

    def schedule(
        self, table: Table, source: Source, min_default: str, status_defaults: Mapping[str, str]
    ) -> ScheduleConfig:
        """Read the adaptive schedule keys that both providers' accounts have."""
        min_interval, max_interval = table.duration_range(
            "min_interval", min_default, "max_interval", "6h", at_least=_FLOOR
        )
        return ScheduleConfig(
            min_interval_s=min_interval,
            max_interval_s=max_interval,
            status_intervals_s=table.status_durations(
                "status_intervals", source, status_defaults, at_least=_FLOOR
            ),
            not_found_interval_s=table.duration(
                "not_found_interval", "1d", positive=True, at_least=_FLOOR
            ),
            active_window_s=table.duration("active_window", "12h"),
            active_max_interval_s=table.duration(
                "active_max_interval", "30m", positive=True, at_least=_FLOOR
            ),
        )

    def ccnow(self, table: Table, name: str, single: bool) -> CCNowConfig:
        env, credentials = secret_names("ccnow", name, single, "password")
        token_env, token_credentials = secret_names("ccnow", name, single, "notification_token")
        url = table.url("url")
        client_id = table.string("client_id", trimmed=True)
        password = self.secrets.required(table, "password", env, credentials, sent_problem)
        return CCNowConfig(
            name=name,
            url=url,
            client_id=client_id,
            password=password,
            store_id=table.string("store_id", "", allow_empty=True, trimmed=True),
            poll_interval_s=table.duration("poll_interval", "2m", positive=True, at_least=_FLOOR),
            batch_size=table.integer("batch_size", 25, 1, 100),
            concurrency=table.integer("concurrency", 2, 1, 16),
            timeout_s=table.timeout("timeout", "15s"),
            retry=self.retry(table),
            schedule=replace(
                self.schedule(table, "ccnow", "2m", {}),
                # 0 is meant: a settled status taken as final (README "The schedule").
                watch_settled_s=table.duration("watch_settled", "180d"),
                settled_interval_s=table.duration(
                    "settled_interval", "1d", positive=True, at_least=_FLOOR
                ),
            ),
            notification_token=self.secrets.optional(
                table, "notification_token", token_env, token_credentials, token_problem
            ),
            max_adjust=table.usd("max_adjust", "100.00"),
        )

    def retry(self, table: Table) -> RetryConfig:
        return RetryConfig(
            attempts=table.integer("retries", 3, 0, 10),
            # Not refused above max_backoff_s ("1m" was a working config): retry_delay caps
            # every wait at it, so a larger value waits that long.
            backoff_s=table.duration("retry_backoff", "0.5s"),
        )

    # --- receiver, api, alerts

    def receiver(self, table: Table) -> ReceiverConfig:
        listen = _listen(table, "127.0.0.1:8080")
        return ReceiverConfig(
            listen_host=listen[0],
            listen_port=listen[1],
            public_url=table.url("public_url", base=True).rstrip("/"),
            secret=self.secrets.required(
                table,
                "secret",
                ["RECONCILER_RECEIVER_SECRET"],
                ["receiver-secret"],
                min_length(16),
            ),
            previous_secret=self.secrets.optional(
                table,
                "previous_secret",
                ["RECONCILER_RECEIVER_PREVIOUS_SECRET"],
                ["receiver-previous-secret"],
                min_length(16),
            ),
            debounce_s=table.duration("debounce", "2s", at_most="1h"),
            # Not 0: CCV calls a notification URL once, and a reference remembered for no
            # time was recorded and dropped, its order's first check not counted notified.
            remember_ref_s=table.duration("remember_ref", "7d", positive=True),
            max_body_bytes=table.integer("max_body", 64 * 1024, 1024, 16 * 1024 * 1024),
            max_connections=(
                table.integer("max_connections", 0, 1, 100_000)
                if table.has("max_connections")
                else None
            ),
            header_timeout_s=table.timeout("header_timeout", "10s"),
        )

    def api(self, table: Table | None) -> ApiConfig | None:
        if table is None:
            return None
        listen = _listen(table, "127.0.0.1:8081")
        fields = table.get("ccv_order_id_fields", list, "an array of strings")
        if fields is not None and (not fields or not all(isinstance(f, str) and f for f in fields)):
            raise table.error("ccv_order_id_fields", "expected a non-empty array of field names")
        if fields is not None and any(control_problem(field) for field in fields):
            raise table.error(
                "ccv_order_id_fields", "a field name must not contain a control character"
            )
        return ApiConfig(
            listen_host=listen[0],
            listen_port=listen[1],
            token=self.secrets.required(
                table, "token", ["RECONCILER_API_TOKEN"], ["api-token"], api_token_problem
            ),
            max_body_bytes=table.integer("max_body", 1024 * 1024, 1024, 16 * 1024 * 1024),
            refresh_timeout_s=table.timeout("refresh_timeout", "10s"),
            ccv_order_id_fields=tuple(fields) if fields else ("orderId", "id"),
        )

    def alerts(self, table: Table | None) -> AlertsConfig:
        stuck = {key: parse_duration(value) for key, value in STUCK_AFTER.items()}
        stuck_after = None if table is None else table.table("stuck_after")
        if stuck_after is not None:
            stuck_after.only(self.keys(Loader.stuck_after), "unknown source (use ccv or ccnow)")
            stuck.update(self.stuck_after(stuck_after))
        # 0 switches the alert off for that status.
        return AlertsConfig({key: seconds for key, seconds in stuck.items() if seconds > 0})

    def stuck_after(self, table: Table) -> dict[tuple[str, str], float]:
        """Read `[alerts.stuck_after]`: a table of status words per source."""
        return {
            (source, status): seconds
            for source in SOURCES
            for status, seconds in table.status_durations(source, source, {}, stuck=True).items()
        }


def _listen(table: Table, default: str) -> tuple[str, int]:
    """The `listen` key of a table: a host (an IP address or a host name) and a port."""
    try:
        listen = parse_listen(table.string("listen", default))
    except ValueError as exc:
        raise table.error("listen", str(exc)) from None
    if listen is None:
        raise table.error("listen", _LISTEN_RULE)
    return listen


def _same_port(receiver: ReceiverConfig, api: ApiConfig) -> bool:
    """Return whether the two listeners may take the same port on the same address."""
    return receiver.listen_port == api.listen_port and may_be_one_address(
        receiver.listen_host, api.listen_host
    )
