"""The daemon's HTTP side: signed notification receivers for CCV and CCNow, /healthz, /metrics.

A notification is only a hint that makes a check happen sooner; the check decides what is true.
Bad input gets a small 4xx and costs no provider call; valid input gets 202 at once (a CCV one
once it is kept in the store, within a bound: notification_hub.py) and the check runs in a
background task, debounced per order so that a burst costs one or two requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from ..config import ReceiverConfig, Secret
from ..logs import fields
from ..metrics import Metrics
from ..sources.codings import BodyTooLarge, BodyUnreadable, codings_of, decoded
from ..store import StoreError
from .cancelled import log_cancelled
from .connections import ConnectionLimits
from .debounce import Debouncer
from .health import health_document
from .http import BodyTooSlow, Listener, json_error, read_at_most, read_body
from .notification_hub import RECORD_TIMEOUT_S, NotificationHub, end_writes, record_ccv
from .notification_request import add_hints, read_ccnow_hints
from .refusals import RefusalLog
from .screen import CCNowCall, CCVCall, Rejected, Screen
from .stopping import STOPPING, Stopping, stopping_answer

log = logging.getLogger("reconciler.server")


# --- the application ------------------------------------------------------------------------


class _Handler:
    """All routes of the receiver, behind one catch-all route."""

    def __init__(
        self,
        receiver: ReceiverConfig,
        hub: NotificationHub,
        ccv_accounts: Sequence[str],
        ccnow_tokens: Mapping[str, Secret | None],
        metrics: Metrics,
        clock: Callable[[], float],
        stopping: Stopping,
        record_timeout_s: float,
    ) -> None:
        self.receiver = receiver
        self.record_timeout_s = record_timeout_s
        self.writes: set[asyncio.Task[bool]] = set()  # CCV notifications' records under way
        self.hub = hub
        self.screen = Screen(receiver, ccv_accounts, ccnow_tokens)
        self.metrics = metrics
        self.clock = clock
        self.debouncer = Debouncer(receiver.debounce_s)
        # CCNow account -> ids for the next poll -> whether named (may start following)
        self.hints: dict[str, dict[str, bool]] = {}
        self.refusals = RefusalLog(log)
        self.stopping = stopping

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request; bad input becomes a small JSON 4xx."""
        received_at = time.monotonic()
        try:
            return await self.route(request, received_at)
        except Rejected as rejected:
            if rejected.status not in (400, 408, 413) and await self.body_is_broken(request):
                # A body that does not decode is the first thing wrong with the request.
                rejected = Rejected(400, "bad_body", source=rejected.source)
            return self.refuse(request, rejected)
        except Exception:
            # A bug, not bad input; the hypothesis test makes sure no input gets here.
            log.error("request.failed", exc_info=True, extra=fields(method=request.method))
            return json_error(500, "internal error")

    def refuse(self, request: web.Request, rejected: Rejected) -> web.Response:
        """Log (rate-limited), count and answer a refused request."""
        self.refusals.log(
            rejected.status, rejected.reason, rejected.source, rejected.account, request.method
        )
        if rejected.source is not None:
            self.metrics.observe_notification(rejected.source, rejected.reason)
        return json_error(rejected.status, rejected.message, headers=rejected.headers)

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """Answer `Expect: 100-continue` only for a request that will be taken: a refused one
        (a forged path, a body over the limit, a notification or /healthz once the stop began)
        gets its answer at once and the connection is closed, instead of inviting a body that
        would be thrown away."""
        if request.version < HttpVersion11:
            return None  # HTTP/1.0 has no 100 Continue: the expectation is ignored (RFC 9110)
        try:
            target = self.screen(request)
            if request.headers.get("Expect", "").lower() != "100-continue":
                raise Rejected(417, "expect")
            limit = self.receiver.max_body_bytes
            if request.content_length is not None and request.content_length > limit:
                source = None if isinstance(target, str) else target.source
                raise Rejected(413, "too_large", source=source)
            if self.stopping.began and target == "/healthz":
                return stopping_answer(status="stopping")
            if self.stopping.began and not isinstance(target, str):
                # As `accept` refuses it once its body is read, with its line (a CCV one names
                # its order: CCV does not call again), but a CCNow body's hints, not read.
                said = (
                    ccv_fields(target)
                    if isinstance(target, CCVCall)
                    else {"account": target.account}
                )
                raise self.refused(target.source, "stopping", **said)
        except Rejected as rejected:
            # The body is not read: the connection closes after the answer (connections.py).
            return self.refuse(request, rejected)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not started
        return None

    async def route(self, request: web.Request, received_at: float) -> web.StreamResponse:
        target = self.screen(request)
        if target == "/healthz":
            return await self.healthz()
        if target == "/metrics":
            return await self.render_metrics()
        if isinstance(target, CCVCall):
            return await self.ccv(request, target, received_at)
        return await self.ccnow(request, target, received_at)

    async def ccv(self, request: web.Request, named: CCVCall, received_at: float) -> web.Response:
        account, kind, value = named.account, named.kind, named.value
        await self.read_body(request, "ccv")  # CCV sends none; read only to enforce the limit
        # Kept before the 202 (notification_hub.py); not once the stop began (refused below).
        recorded = not self.debouncer.refusing and await record_ccv(
            self.hub, named, self.record_timeout_s, self.writes
        )
        if kind == "order":
            key: tuple[str, ...] = ("ccv", account, value)
            call = partial(self.hub.check_ccv_order, account, value, recorded=recorded)
        else:
            key = ("ccv-ref", account, value)
            call = partial(self.hub.check_ccv_reference, account, value, recorded=recorded)
        return self.accept(key, call, received_at, source="ccv", **ccv_fields(named))

    async def ccnow(
        self, request: web.Request, named: CCNowCall, received_at: float
    ) -> web.Response:
        account = named.account
        body = await self.read_body(request, "ccnow")
        hints = read_ccnow_hints(body)
        pending = self.hints.setdefault(account, {})
        add_hints(pending, [(i, True) for i in hints.named])
        add_hints(pending, [(i, False) for i in hints.mentioned])
        call = partial(self.poll_ccnow, account)
        return self.accept(
            ("ccnow", account),
            call,
            received_at,
            source="ccnow",
            account=account,
            hints=len(hints.named) + len(hints.mentioned),
        )

    async def poll_ccnow(self, account: str, received_at: float) -> None:
        """Poll one CCNow account with every hint collected since its last poll."""
        taken = self.hints.pop(account, {})
        named = [i for i, is_named in taken.items() if is_named]
        mentioned = [i for i, is_named in taken.items() if not is_named]
        try:
            await self.hub.poll_ccnow(account, named, received_at, mentioned)
        except asyncio.CancelledError:
            # Not checked (a stop, or the call's time limit): back with the hints, so the stop's
            # `notification.checks_cancelled` names them, or the next notification's poll asks.
            add_hints(self.hints.setdefault(account, {}), list(taken.items()))
            raise

    def accept(
        self,
        key: tuple[str, ...],
        call: Callable[[float], Awaitable[None]],
        received_at: float,
        *,
        source: str,
        **log_fields: Any,
    ) -> web.Response:
        outcome = self.debouncer.trigger(key, call, received_at)
        if outcome == "refused":
            # Refused by the stop, or every check slot busy: each says which to the caller too.
            reason = "stopping" if self.debouncer.refusing else "busy"
            raise self.refused(source, reason, **log_fields)
        # A burst of repeats logs one line per check, not one per request.
        level = logging.INFO if outcome == "scheduled" else logging.DEBUG
        log.log(level, "notification.accepted", extra=fields(source=source, **log_fields))
        self.metrics.observe_notification(source, "accepted")
        return web.json_response({"accepted": True}, status=202)

    def refused(self, source: str, reason: str, **log_fields: Any) -> Rejected:
        """Log a notification the stop (`stopping`) or full check slots (`busy`) refuse;
        return its 503, which says which."""
        log.warning(
            "notification.refused", extra=fields(source=source, reason=reason, **log_fields)
        )
        headers = {"Retry-After": "60"}
        return Rejected(503, reason, source=source, headers=headers, message=reason)

    async def read_body(self, request: web.Request, source: str) -> bytes:
        """Read at most `max_body_bytes`; 413 above, 400 when the body is broken, 408 slow."""
        try:
            return await read_body(
                request, self.receiver.max_body_bytes, timeout_s=self.receiver.header_timeout_s
            )
        except BodyTooLarge:
            raise Rejected(413, "too_large", source=source) from None
        except BodyTooSlow:
            raise Rejected(408, "slow_body", source=source) from None
        except BodyUnreadable:
            raise Rejected(400, "bad_body", source=source) from None

    async def body_is_broken(self, request: web.Request) -> bool:
        """Read what is left of a refused request's body (bounded) and say if it is broken:
        only a body already all here is read. One still to come is not waited for: a forged
        URL with a body that never comes would hold its connection for `header_timeout`, and a
        few such took every connection from CCV's one call. The refusal stands, and the
        connection is closed after it (connections.py)."""
        if not request.body_exists:
            return False
        if not request.content.is_eof() and request.content.exception() is None:
            return False
        limit = self.receiver.max_body_bytes
        try:
            # All here (or its failure is): no wait to bound.
            body = await read_at_most(request, limit + 1)
        except (HttpProcessingError, web.RequestPayloadError):
            return True
        except OSError:
            return False  # aiohttp closes the connection; the refusal stands
        if len(body) > limit:
            return False  # not read to its end, so not known to be broken: the refusal stands
        try:
            decoded(body, codings_of(request.headers.getall(hdrs.CONTENT_ENCODING, ())), limit)
        except BodyUnreadable:
            return True
        except BodyTooLarge:
            pass
        return False

    async def healthz(self) -> web.Response:
        if self.stopping.began:
            # Whatever the sources' health: a monitor (a load balancer) takes it out now.
            return stopping_answer(status="stopping")
        try:
            health = await self.hub.health()
        except Exception:
            log.error("health.failed", exc_info=True)
            return web.json_response(
                {"status": "unhealthy", "sources": [], "outbox": {}}, status=503
            )
        document, ok = health_document(health, self.clock())
        return web.json_response(document, status=200 if ok else 503)

    async def render_metrics(self) -> web.Response:
        try:
            await self.hub.refresh_metrics()
        except StoreError:
            pass  # logged once by the store's health; a scrape every 15 s must not add a traceback
        except Exception:
            # Counters are still right; only the store-backed gauges are stale.
            log.warning("metrics.refresh_failed", exc_info=True)
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})


def ccv_fields(named: CCVCall) -> dict[str, str]:
    """What a CCV notification's lines name: its account, and the order or reference."""
    what = {"account": named.account, "kind": named.kind}
    what["order_id" if named.kind == "order" else "reference"] = named.value
    if named.signed_with != "secret":
        what["signed_with"] = named.signed_with
    return what


DEBOUNCER = web.AppKey("debouncer", Debouncer)
# Ends the background checks (they get the app's `checks_stop_timeout_s`, then are cancelled):
# the stop's first step, while the connections taken stay open; the app's cleanup again.
CLOSE_CHECKS: web.AppKey[Callable[[], Awaitable[None]]] = web.AppKey("close_checks")


def build_app(
    receiver: ReceiverConfig,
    hub: NotificationHub,
    *,
    ccv_accounts: Sequence[str],
    ccnow_tokens: Mapping[str, Secret | None],
    metrics: Metrics,
    clock: Callable[[], float] = time.time,
    checks_stop_timeout_s: float = 0.0,
    record_timeout_s: float = RECORD_TIMEOUT_S,
) -> web.Application:
    """Return the receiver app; `app[DEBOUNCER]` holds the background checks until cleanup,
    which lets them end within `checks_stop_timeout_s` and then cancels the rest. A CCV
    notification waits `record_timeout_s` at most for its record before its 202."""
    stopping = Stopping()
    handler = _Handler(
        receiver, hub, ccv_accounts, ccnow_tokens, metrics, clock, stopping, record_timeout_s
    )
    # Refused from the stop's first moment: one answered 202 would have its check cut off, and
    # CCV does not call again either way; a 503 does not claim it.
    stopping.on_begin(handler.debouncer.refuse)
    metrics.expect_notifications(
        [
            s
            for s, on in (
                ("ccv", bool(ccv_accounts)),
                ("ccnow", any(t is not None for t in ccnow_tokens.values())),
            )
            if on
        ]
    )
    app = web.Application(client_max_size=receiver.max_body_bytes)
    app[DEBOUNCER] = handler.debouncer
    app[STOPPING] = stopping
    app.router.add_route("*", r"/{tail:[\s\S]*}", handler.handle, expect_handler=handler.expect)

    async def close_checks() -> None:
        await end_writes(handler.writes, record_timeout_s)
        cancelled = await handler.debouncer.close(checks_stop_timeout_s)
        log_cancelled(log, cancelled, handler.hints)  # none the second time

    app[CLOSE_CHECKS] = close_checks
    app.on_cleanup.append(lambda _: close_checks())
    return app


class Receiver(Listener):
    """Serve the receiver app on one address until close(), within `limits`; closing cancels
    and awaits the background checks (the app's cleanup)."""

    def __init__(
        self,
        app: web.Application,
        *,
        shutdown_timeout_s: float = 5.0,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(
            app,
            limits or ConnectionLimits(),
            logger=log,
            name="receiver",
            shutdown_timeout_s=shutdown_timeout_s,
            pathless_404=True,
        )

    async def stop_accepting(self) -> None:
        """The stop's first step: refuse notifications and /healthz (503 `stopping`), take no
        connection, end the checks under way; the connections taken stay open until close(),
        so that a notification on one (a kept-alive one, one that had sent half its head) is
        told 503 rather than cut off, which CCV would not tell from a lost answer."""
        await super().stop_accepting()
        await self._runner.app[CLOSE_CHECKS]()

    def listening_fields(self) -> dict[str, Any]:
        """Name the connection cap in the `receiver.listening` line."""
        return {"max_connections": self.max_connections}
