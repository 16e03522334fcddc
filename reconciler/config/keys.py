"""The keys each table may hold, and the defaults that are tables themselves."""

from __future__ import annotations

from typing import Literal

TOP_KEYS = ("store", "ccv", "ccnow", "receiver", "sinks", "alerts", "api")
API_KEYS = ("listen", "token", "token_file", "max_body", "refresh_timeout", "ccv_order_id_fields")
RETRY_KEYS = ("retries", "retry_backoff")
SCHEDULE_KEYS = (
    "min_interval",
    "max_interval",
    "status_intervals",
    "not_found_interval",
    "active_window",
    "active_max_interval",
)
CCV_KEYS = (
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
    *RETRY_KEYS,
    *SCHEDULE_KEYS,
)
CCNOW_KEYS = (
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
    *RETRY_KEYS,
    *SCHEDULE_KEYS,
)
RECEIVER_KEYS = (
    "listen",
    "public_url",
    "secret",
    "secret_file",
    "previous_secret",
    "previous_secret_file",
    "debounce",
    "remember_ref",
    "max_body",
    "max_connections",
    "header_timeout",
)
SINK_COMMON_KEYS = ("type", "name", "timeout", "retry_min", "retry_max", "max_age")
SINK_KEYS: dict[str, tuple[str, ...]] = {
    "log": (),
    "jsonl": ("path",),
    "webhook": ("url", "secret", "secret_file"),
    "command": ("command",),
}
SINK_TYPES: tuple[Literal["log", "jsonl", "webhook", "command"], ...] = (
    "log",
    "jsonl",
    "webhook",
    "command",
)
AUTH_SCHEMES: tuple[Literal["basic", "bearer", "header"], ...] = ("basic", "bearer", "header")

CCV_STATUS_INTERVALS = {"AwaitingPayment": "2m", "Incomplete": "6h"}
STUCK_AFTER: dict[tuple[str, str], str] = {
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
