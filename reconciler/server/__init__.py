"""The daemon's HTTP side: the provider-facing receiver (notifications, /healthz, /metrics) and
the integration API, with what both listeners share (connection bounds, error pages).

`from reconciler.server import build_app, Receiver, ...` keeps working: the receiver's public
names are re-exported here.
"""

from __future__ import annotations

from .debounce import CALL_TIMEOUT_S, MAX_KEYS, Debouncer, Trigger
from .health import Health, SourceHealth, health_document
from .notification_hub import NotificationHub
from .notification_request import (
    MAX_HINTS,
    MAX_PENDING_HINTS,
    CCNowHints,
    extract_ccnow_ids,
    parse_notify_path,
    read_ccnow_hints,
)
from .receiver import DEBOUNCER, Receiver, build_app

__all__ = (
    "CALL_TIMEOUT_S",
    "DEBOUNCER",
    "MAX_HINTS",
    "MAX_KEYS",
    "MAX_PENDING_HINTS",
    "CCNowHints",
    "Debouncer",
    "Health",
    "NotificationHub",
    "Receiver",
    "SourceHealth",
    "Trigger",
    "build_app",
    "extract_ccnow_ids",
    "health_document",
    "parse_notify_path",
    "read_ccnow_hints",
)
