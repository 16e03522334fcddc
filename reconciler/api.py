"""Kept for imports: the integration API lives in `reconciler.server.api`."""

from __future__ import annotations

from .server.api import (
    API_LIMITS,
    DEFAULT_FEED_LIMIT,
    MAX_FEED_LIMIT,
    PRICING_PATH,
    ApiDeps,
    ApiListener,
    BadRequest,
    Refresh,
    build_api,
)

__all__ = [
    "API_LIMITS",
    "DEFAULT_FEED_LIMIT",
    "MAX_FEED_LIMIT",
    "PRICING_PATH",
    "ApiDeps",
    "ApiListener",
    "BadRequest",
    "Refresh",
    "build_api",
]
