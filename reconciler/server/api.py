"""The integration API: the integrator's own application tracks orders, reads them and the
event feed, and submits CCV orders through reconciler, over HTTP on an internal address.

Every request is authenticated first (bearer token, constant-time compare): without it the
answer is 401 and nothing is read, written or sent. Bad input gets a JSON 4xx naming the field;
a 500 means a bug. Reads go through a read-only connection of their own, so they only ever see
committed rows: a consumer of the feed never gets an event that may yet be rolled back.

The edges (guard, input checks) are in `api_requests`, the orders and the feed in
`api_orders`, the writes in `api_writes`; this module wires the routes and serves them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from aiohttp import web

from ..config import ApiConfig
from .api_auth import TokenRefusals
from .api_orders import DEFAULT_FEED_LIMIT, MAX_FEED_LIMIT, Orders
from .api_requests import ApiDeps, BadRequest, Refresh, expect_screen, guard
from .api_writes import PRICING_PATH, Writes
from .connections import ConnectionLimits
from .http import EXPECT_SCREEN, Listener
from .stopping import STOPPING, Stopping

__all__ = (
    "API_LIMITS",
    "DEFAULT_FEED_LIMIT",
    "MAX_FEED_LIMIT",
    "PRICING_PATH",
    "ApiDeps",
    "ApiListener",
    "BadRequest",
    "Refresh",
    "build_api",
)

log = logging.getLogger("reconciler.api")

# The receiver's bounds, with a smaller cap: the API is internal, and the receiver's cap plus
# this one still leave descriptors for the database, the sinks and the providers.
API_LIMITS = ConnectionLimits(max_connections=128, header_timeout_s=10.0)

# The query parameters each route (by its name) takes; any other is refused (400): a typo read
# as nothing (`?afer=` for `?after=`) would answer as if it were not given. `account` wherever
# a request names an account, also where its body may (`"account"`; both given must agree).
_ACCOUNT = frozenset({"account"})
QUERY_PARAMETERS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "track": _ACCOUNT,
        "read": frozenset({"account", "refresh"}),
        "untrack": _ACCOUNT,
        "events": frozenset({"after", "limit", "type"}),
        "submit": _ACCOUNT,
        "ccv_resolve": _ACCOUNT,
        "submission": _ACCOUNT,
        "pricing": _ACCOUNT,
        "ccnow_actions": _ACCOUNT,
        "ccnow_resolve": _ACCOUNT,
        "ccnow_action": frozenset(),
    }
)


def build_api(config: ApiConfig, deps: ApiDeps) -> web.Application:
    """Return the integration API app."""
    orders = Orders(config, deps)
    writes = Writes(config, deps)
    stopping = Stopping()
    # The stop's first moment: a refresh under way answers the stored state at once.
    stopping.on_begin(orders.stop)
    # The body limit is enforced by `json_body` itself (413 in JSON); aiohttp's own limit is
    # only a backstop.
    metrics = deps.metrics
    refusals = TokenRefusals(
        config.token.reveal, counted=metrics.observe_unauthorized if metrics else lambda r: None
    )
    app = web.Application(
        middlewares=[
            guard(
                refusals,
                deps.secrets_search,
                deps.store.unusable,
                stopping,
                QUERY_PARAMETERS,
            )
        ],
        client_max_size=config.max_body_bytes + 1,
    )
    app.router.add_post("/api/v1/orders", orders.track, name="track")
    app.router.add_get(
        "/api/v1/orders/{source}/{order_id:.+}", orders.read, allow_head=False, name="read"
    )
    app.router.add_delete("/api/v1/orders/{source}/{order_id:.+}", orders.untrack, name="untrack")
    app.router.add_get("/api/v1/events", orders.events, allow_head=False, name="events")
    app.router.add_post("/api/v1/ccv/orders", writes.submit, name="submit")
    app.router.add_post("/api/v1/ccv/submissions/resolve", writes.ccv_resolve, name="ccv_resolve")
    app.router.add_get(
        "/api/v1/ccv/submissions/{reference:.+}",
        writes.submission,
        allow_head=False,
        name="submission",
    )
    app.router.add_patch("/api/v1/ccv/pricing", writes.pricing, name="pricing")
    app.router.add_post("/api/v1/ccnow/actions", writes.ccnow_actions, name="ccnow_actions")
    app.router.add_post("/api/v1/ccnow/actions/resolve", writes.ccnow_resolve, name="ccnow_resolve")
    # Not `resolve`: a GET of it is the 405 of POST /ccnow/actions/resolve, not a bad id's 422.
    app.router.add_get(
        "/api/v1/ccnow/actions/{id:(?!resolve$)[^/]+}",
        writes.ccnow_action,
        allow_head=False,
        name="ccnow_action",
    )
    app[EXPECT_SCREEN] = expect_screen(
        refusals,
        config.max_body_bytes,
        app.router,
        stopping,
        QUERY_PARAMETERS,
        deps.secrets_search,
    )
    app[STOPPING] = stopping

    async def close(_: web.Application) -> None:
        await orders.close()

    app.on_cleanup.append(close)
    return app


class ApiListener(Listener):
    """Serve the API app on one address until close(); requests in flight get the shutdown
    timeout to finish. Bounded and stopped like the receiver: fixed error pages, quiet junk, a
    header timeout, a cap; from stop_accepting() on, a request on a connection taken before
    is answered 503 `stopping` (after its token is checked) until close()."""

    def __init__(
        self,
        app: web.Application,
        limits: ConnectionLimits = API_LIMITS,
        *,
        shutdown_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(
            app,
            limits,
            logger=log,
            name="api",
            shutdown_timeout_s=shutdown_timeout_s,
        )
