"""The integration API: the integrator's own application tracks orders, reads them and the
event feed, and submits CCV orders through reconciler, over HTTP on an internal address.

Every request is authenticated first (bearer token, constant-time compare): without it the
answer is 401 and nothing is read, written or sent. Bad input gets a JSON 4xx naming the field;
a 500 means a bug. Reads go through a read-only connection of their own, so they only ever see
committed rows: a consumer of the feed never gets an event that may yet be rolled back.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .. import store_submissions as subs
from .. import strict_json
from ..config import ApiConfig
from ..events import iso_time
from ..logs import fields
from ..model import SOURCES, InvalidOrderId, OrderKey, OrderState, Source, normalize_order_id
from ..order_view import order_json
from ..store import Store, StoreError
from ..writes.ccnow_actions import ActionSender, BadAction, command_json, from_document
from ..writes.ccv_http import NotSent, Uncertain, send_once
from ..writes.pricing import blocking, check_pricing
from ..writes.submit import MAX_REFERENCE_LENGTH, BadSubmission, Submitter
from .connections import BoundedRunner, ConnectionLimits

log = logging.getLogger("reconciler.api")

PRICING_PATH = "/api/ordercompletion/reseller/orderconfigurator/SetShoppingCardPricingDetails"
MAX_FEED_LIMIT = 1000
DEFAULT_FEED_LIMIT = 100
# The receiver's bounds, with a smaller cap: the API is internal, and the receiver's cap plus
# this one still leave descriptors for the database, the sinks and the providers.
API_LIMITS = ConnectionLimits(max_connections=128, header_timeout_s=10.0)
_CURSOR = re.compile(r"[0-9]{1,18}", re.ASCII)
_TRACK_FIELDS = frozenset({"source", "order_id", "external_reference", "account"})

Refresh = Callable[[OrderKey], Awaitable[bool]]


class BadRequest(Exception):
    """Input we answer with a JSON 4xx that names the field."""

    def __init__(
        self, status: int, message: str, field: str | None = None, **extra: object
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.extra = extra

    def response(self) -> web.Response:
        """Return the JSON error answer."""
        body: dict[str, object] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return web.json_response(body, status=self.status)


@dataclass(frozen=True)
class ApiDeps:
    """What the API works with: the writer's store, a read-only one, and the daemon's calls."""

    store: Store
    reader: Store
    submitter: Submitter
    refresh: Refresh
    accounts: Mapping[Source, Sequence[str]]
    actions: ActionSender | None = None


def _token_ok(header: str | None, token: str) -> bool:
    if header is None:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    try:
        raw = given.strip().encode("utf-8", "surrogateescape")
    except UnicodeError:
        return False
    return hmac.compare_digest(raw, token.encode("utf-8"))


class _Api:
    """The handlers; one instance per app."""

    def __init__(self, config: ApiConfig, deps: ApiDeps) -> None:
        self.config = config
        self.deps = deps
        self._refreshes: set[asyncio.Task[bool]] = set()

    # --- the edges: auth, errors, bodies ----------------------------------------------------

    @web.middleware
    async def guard(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Refuse a request without the token before anything else; turn errors into JSON."""
        if not _token_ok(request.headers.get("Authorization"), self.config.token.reveal()):
            log.debug("api.unauthorized", extra=fields(method=request.method))
            return web.json_response(
                {"error": "a bearer token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="reconciler"'},
            )
        try:
            return await handler(request)
        except BadRequest as exc:
            log.debug(
                "api.rejected",
                extra=fields(method=request.method, status=exc.status, field=exc.field),
            )
            return exc.response()
        except BadSubmission as exc:
            return BadRequest(exc.status, exc.message, exc.field).response()
        except web.HTTPException as exc:
            # The router's own 404 / 405, in JSON like every other answer.
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return web.json_response(
                {"error": exc.reason.lower()}, status=exc.status, headers=headers
            )
        except StoreError:
            # Logged once by the store's health when it started failing (a full disk).
            return web.json_response(
                {"error": "the database cannot be used; try again later"},
                status=503,
                headers={"Retry-After": "5"},
            )
        except Exception:
            log.error("api.failed", exc_info=True, extra=fields(method=request.method))
            return web.json_response({"error": "internal error"}, status=500)

    async def body(self, request: web.Request) -> object:
        """Return the request's JSON body; 413 above the limit, 400 when it is not JSON."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BadRequest(413, f"body larger than {limit} bytes", "$")
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := await request.content.read(limit + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise BadRequest(413, f"body larger than {limit} bytes", "$")
        except (HttpProcessingError, web.RequestPayloadError, OSError):
            raise BadRequest(400, "the body could not be read", "$") from None
        try:
            return strict_json.loads(b"".join(chunks))
        except (ValueError, RecursionError) as exc:
            problem = "not JSON"
            if isinstance(exc, (json.JSONDecodeError, strict_json.NotJSON)):
                problem = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise BadRequest(400, f"malformed JSON: {problem}", "$") from None

    def source(self, raw: object) -> Source:
        for source in SOURCES:
            if raw == source:
                return source
        raise BadRequest(422, f"unknown source (one of {', '.join(SOURCES)})", "source")

    def account(self, source: Source, raw: object, field: str = "account") -> str:
        accounts = self.deps.accounts.get(source, ())
        if raw is None:
            if len(accounts) == 1:
                return accounts[0]
            if not accounts:
                raise BadRequest(422, f"no {source} account is configured", "source")
            raise BadRequest(422, f"several {source} accounts: name one", field)
        if not isinstance(raw, str) or raw not in accounts:
            raise BadRequest(422, f"no {source} account of that name", field)
        return raw

    def order_id(self, source: Source, raw: object) -> str:
        if not isinstance(raw, str):
            raise BadRequest(422, "must be a string", "order_id")
        try:
            return normalize_order_id(source, raw)
        except InvalidOrderId as exc:
            raise BadRequest(422, str(exc), "order_id") from None

    # --- orders ------------------------------------------------------------------------------

    async def track(self, request: web.Request) -> web.Response:
        """POST /api/v1/orders: start following an order; 201 new, 200 already followed."""
        doc = await self.body(request)
        if not isinstance(doc, dict):
            raise BadRequest(422, "the body must be a JSON object", "$")
        for name in doc:
            if name not in _TRACK_FIELDS:
                raise BadRequest(422, "unknown field", str(name))
        source = self.source(doc.get("source"))
        order_id = self.order_id(source, doc.get("order_id"))
        account = self.account(source, doc.get("account"))
        ref = doc.get("external_reference")
        if ref is not None:
            if source != "ccv":
                raise BadRequest(
                    422, "external references are for CCV orders", "external_reference"
                )
            if not (isinstance(ref, str) and 0 < len(ref) <= MAX_REFERENCE_LENGTH):
                raise BadRequest(
                    422,
                    f"must be a string of 1 to {MAX_REFERENCE_LENGTH} characters",
                    "external_reference",
                )
            # As `track --ref`: it goes into the notification URL, and into the database.
            if not ref.isprintable():
                raise BadRequest(
                    422, "must not hold control or invisible characters", "external_reference"
                )
        key = OrderKey(source, account, order_id)
        known = await self.find(key)
        now = time.time()
        await self.deps.store.track(source, account, [(order_id, ref)], now)
        if ref is not None:
            await subs.resolve(self.deps.store, account, ref, order_id, now)
        state = await self.find(key)
        log.info("api.tracked", extra=fields(source=source, account=account, order_id=order_id))
        assert state is not None
        return web.json_response(order_json(state), status=200 if known else 201)

    async def find(self, key: OrderKey) -> OrderState | None:
        """Return the committed snapshot row of one order."""
        return (await self.deps.reader.load_orders([key])).get(key)

    def key(self, request: web.Request) -> OrderKey:
        source = self.source(request.match_info["source"])
        order_id = self.order_id(source, request.match_info["order_id"])
        return OrderKey(source, self.account(source, request.query.get("account")), order_id)

    async def read(self, request: web.Request) -> web.Response:
        """GET /api/v1/orders/{source}/{order_id}[?refresh=1]: the order, optionally fresh."""
        key = self.key(request)
        refresh = request.query.get("refresh", "0")
        if refresh not in ("0", "1", "true", "false"):
            raise BadRequest(400, "must be 1 or 0", "refresh")
        state = await self.find(key)
        if state is None:
            raise BadRequest(404, "not tracked", "order_id")
        if refresh not in ("1", "true"):
            return web.json_response(order_json(state))
        task = asyncio.ensure_future(self.deps.refresh(key))
        # The check goes on past the timeout (its result is committed for the next read).
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)
        try:
            fresh = await asyncio.wait_for(asyncio.shield(task), self.config.refresh_timeout_s)
        except asyncio.TimeoutError:
            fresh = False
        state = await self.find(key) or state
        return web.json_response({**order_json(state), "refreshed": fresh})

    async def untrack(self, request: web.Request) -> web.Response:
        """DELETE /api/v1/orders/{source}/{order_id}: stop following; 204."""
        key = self.key(request)
        await self.deps.store.untrack(key.source, key.account, [key.order_id])
        log.info("api.untracked", extra=fields(source=key.source, order_id=key.order_id))
        return web.Response(status=204)

    # --- events ------------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        """GET /api/v1/events?after=CURSOR&limit=N&type=T: the feed in commit order."""
        after_text = request.query.get("after", "0")
        if not _CURSOR.fullmatch(after_text):
            raise BadRequest(400, "not a cursor of this feed (use `next` as given)", "after")
        limit_text = request.query.get("limit", str(DEFAULT_FEED_LIMIT))
        if not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > 6:
            raise BadRequest(400, f"must be an integer 1 to {MAX_FEED_LIMIT}", "limit")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_FEED_LIMIT:
            raise BadRequest(400, f"must be an integer 1 to {MAX_FEED_LIMIT}", "limit")
        kind = request.query.get("type")
        if kind is not None and not (0 < len(kind) <= 64 and kind.isprintable()):
            raise BadRequest(400, "not an event type", "type")
        after = int(after_text)
        # One statement, one snapshot: the page and the highest seq agree, so `next` may skip
        # events of other types but never one of this type committed meanwhile.
        rows = list(
            await self.deps.reader.conn.execute_fetchall(
                "SELECT seq, body FROM (SELECT seq, body FROM events WHERE seq > ? "
                "AND (? IS NULL OR type = ?) ORDER BY seq LIMIT ?) "
                "UNION ALL SELECT ifnull(max(seq), 0), NULL FROM events",
                (after, kind, kind, limit),
            )
        )
        top = int(rows.pop()[0])
        bodies = [bytes(r[1]) for r in rows]
        last = int(rows[-1][0]) if len(rows) == limit else max(top, after)
        # The bodies are stored CloudEvents JSON: spliced in, not parsed and encoded again.
        payload = b'{"events":[' + b",".join(bodies) + b'],"next":"' + str(last).encode() + b'"}'
        return web.Response(body=payload, content_type="application/json")

    # --- CCV writes --------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        """POST /api/v1/ccv/orders?account=A: submit through reconciler."""
        account = self.account("ccv", request.query.get("account"))
        doc = await self.body(request)
        result = await self.deps.submitter.submit(account, doc)
        return _passed_back(result.status, result.body, result.content_type, result.headers)

    async def submission(self, request: web.Request) -> web.Response:
        """GET /api/v1/ccv/submissions/{reference}?account=A: where a submit stands."""
        account = self.account("ccv", request.query.get("account"))
        reference = request.match_info["reference"]
        if not 0 < len(reference) <= MAX_REFERENCE_LENGTH:
            raise BadRequest(422, "not an external reference", "reference")
        found = await subs.find(self.deps.reader, account, reference)
        if found is None:
            raise BadRequest(404, "nothing was submitted with this reference", "reference")
        return web.json_response(
            {
                "account": found.account,
                "external_reference": found.external_reference,
                "state": found.state,
                "order_id": found.order_id,
                "http_status": found.http_status,
                "reason": found.reason,
                "created_at": iso_time(found.created_at),
                "closed_at": None if found.closed_at is None else iso_time(found.closed_at),
            }
        )

    # --- CCNow actions -------------------------------------------------------------------------

    def sender(self) -> ActionSender:
        if self.deps.actions is None:
            raise BadRequest(404, "no CCNow account is configured")
        return self.deps.actions

    async def ccnow_actions(self, request: web.Request) -> web.Response:
        """POST /api/v1/ccnow/actions: record CCNow order actions and send them at once."""
        sender = self.sender()
        doc = await self.body(request)
        if not isinstance(doc, dict):
            raise BadRequest(400, "the body must be a JSON object", "$")
        account = self.account("ccnow", doc.get("account"))
        try:
            new = from_document(sender.accounts[account], doc)
        except BadAction as exc:
            name = str(exc).partition(":")[0].removeprefix("--")
            raise BadRequest(422, str(exc), name if name in doc else None) from None
        taken = await sender.take(new)
        return web.json_response({"commands": taken.to_json(), "sent": taken.sent})

    async def ccnow_action(self, request: web.Request) -> web.Response:
        """GET /api/v1/ccnow/actions/{id}: where one command stands."""
        raw = request.match_info["id"]
        if not _CURSOR.fullmatch(raw):
            raise BadRequest(422, "not a command id", "id")
        found = await self.sender().command(int(raw))
        if found is None:
            raise BadRequest(404, "no command with this id", "id")
        return web.json_response(command_json(found))

    async def pricing(self, request: web.Request) -> web.Response:
        """PATCH /api/v1/ccv/pricing?account=A: check the prices, then forward them."""
        account = self.account("ccv", request.query.get("account"))
        doc = await self.body(request)
        problems = check_pricing(doc)
        if blocking(problems):
            log.info(
                "api.pricing_refused",
                extra=fields(account=account, problems=sum(p.blocking for p in problems)),
            )
            return web.json_response(
                {
                    "error": "the prices are inconsistent; nothing was sent to CCV",
                    "problems": [p.to_json() for p in problems],
                },
                status=422,
            )
        cfg = self.deps.submitter.accounts[account]
        payload = json.dumps(doc, ensure_ascii=False).encode()
        try:
            answer = await send_once(
                self.deps.submitter.session, cfg, "PATCH", PRICING_PATH, payload
            )
        except NotSent:
            raise BadRequest(502, "CCV could not be reached; nothing was sent") from None
        except Uncertain as exc:
            # Setting prices again is harmless, so the caller may simply repeat it.
            status = 504 if str(exc) == "timeout" else 502
            raise BadRequest(status, "CCV's answer was lost; the call is safe to repeat") from None
        headers = {"Reconciler-Pricing-Warnings": str(len(problems))}
        return _passed_back(answer.status, answer.body, answer.content_type, headers)

    async def close(self) -> None:
        """Wait for refreshes still running past their request's timeout (cancelled)."""
        for task in list(self._refreshes):
            task.cancel()
        await asyncio.gather(*self._refreshes, return_exceptions=True)


def _passed_back(
    status: int, body: bytes, content_type: str, headers: Mapping[str, str]
) -> web.Response:
    response = web.Response(status=status, body=body, headers=dict(headers))
    response.headers["Content-Type"] = content_type or "application/octet-stream"
    return response


def build_api(config: ApiConfig, deps: ApiDeps) -> web.Application:
    """Return the integration API app."""
    api = _Api(config, deps)
    # The body limit is enforced by `_Api.body` itself (413 in JSON); aiohttp's own limit is
    # only a backstop.
    app = web.Application(middlewares=[api.guard], client_max_size=config.max_body_bytes + 1)
    app.router.add_post("/api/v1/orders", api.track)
    app.router.add_get("/api/v1/orders/{source}/{order_id:.+}", api.read, allow_head=False)
    app.router.add_delete("/api/v1/orders/{source}/{order_id:.+}", api.untrack)
    app.router.add_get("/api/v1/events", api.events, allow_head=False)
    app.router.add_post("/api/v1/ccv/orders", api.submit)
    app.router.add_get("/api/v1/ccv/submissions/{reference:.+}", api.submission, allow_head=False)
    app.router.add_patch("/api/v1/ccv/pricing", api.pricing)
    app.router.add_post("/api/v1/ccnow/actions", api.ccnow_actions)
    app.router.add_get("/api/v1/ccnow/actions/{id}", api.ccnow_action, allow_head=False)

    async def close(_: web.Application) -> None:
        await api.close()

    app.on_cleanup.append(close)
    return app


class ApiListener:
    """Serve the API app on one address until close()."""

    def __init__(self, app: web.Application, *, shutdown_timeout_s: float = 5.0) -> None:
        # No access log: the application calls often, and each call logs what it changed.
        # Bounded like the receiver: fixed error pages, quiet junk, a header timeout, a cap.
        self._runner = BoundedRunner(
            app, API_LIMITS, access_log=None, shutdown_timeout=shutdown_timeout_s
        )
        self._started = False

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 picks a free port) and return the bound port."""
        await self._runner.setup()
        self._started = True
        await web.TCPSite(self._runner, host, port).start()
        port = int(self._runner.addresses[0][1])
        log.info("api.listening", extra=fields(host=host, port=port))
        return port

    async def close(self) -> None:
        """Stop listening; requests in flight get the shutdown timeout to finish."""
        if self._started:
            self._started = False
            await self._runner.cleanup()
