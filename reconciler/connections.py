"""Kept for imports: the connection bounds live in `reconciler.server.connections`."""

from __future__ import annotations

from .server.connections import (
    CAPACITY_LOG_INTERVAL_S,
    JUNK_LOG_INTERVAL_S,
    MAX_DEFAULT_CONNECTIONS,
    BoundedRunner,
    ConnectionLimits,
    ProtocolLog,
    connection_cap,
    open_file_limit,
)

__all__ = [
    "CAPACITY_LOG_INTERVAL_S",
    "JUNK_LOG_INTERVAL_S",
    "MAX_DEFAULT_CONNECTIONS",
    "BoundedRunner",
    "ConnectionLimits",
    "ProtocolLog",
    "connection_cap",
    "open_file_limit",
]
