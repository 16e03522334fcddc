"""A simulator of both providers: CCV order status + submit, CCNow Order Update API, with faults."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from reconciler.config import is_loopback
from reconciler.model import InvalidOrderId, Source, known_statuses, normalize_ccnow_id

log = logging.getLogger("reconciler.sandbox")

CCV_STATUS_PATH = "/api/ordercompletion/reseller/order/{orderId}/status"
CCV_SUBMIT_PATH = "/api/ordercompletion/reseller/order"
CCNOW_PATH = "/cgi-local/oapi_receive.cgi"

NOTIFICATION_TIMEOUT_S = 5.0
# stop() lets notifications in flight finish for this long, then cancels them.
STOP_GRACE_S = 1.0
# The advance loop looks at the clock at least this often, so an injected clock that jumps is seen.
MAX_IDLE_S = 1.0
MEAN_STEP_S = 4.0

# A weighted random walk: status -> ((next status, weight), ...). `None` means "stays for good";
# a status without an entry never moves on its own.
Lifecycle = dict[str, tuple[tuple[str | None, float], ...]]

CCV_LIFECYCLE: Lifecycle = {
    "Processing": (("Incomplete", 1.0),),
    "Incomplete": (("AwaitingPayment", 6.0), ("Screening", 3.0), ("Canceled", 1.0)),
    "AwaitingPayment": (("Screening", 8.5), ("Canceled", 1.0), ("Failed", 0.5)),
    "Screening": (("New", 9.0), ("Closed", 1.0)),
    "New": (("FulfillmentInProgress", 6.0), ("FulfillmentDone", 4.0)),
    "ErpInProgress": (("FulfillmentInProgress", 1.0),),
    "FulfillmentInProgress": (("FulfillmentDone", 1.0),),
    "FulfillmentDone": (("Completed", 1.0),),
}

CCNOW_LIFECYCLE: Lifecycle = {
    "received": (("processing", 7.0), ("paypal_hold", 3.0)),
    "paypal_hold": (("processing", 9.0), ("declined", 1.0)),
    "processing": (
        ("pending", 7.0),
        ("getman_hold", 0.7),
        ("vacation_hold", 0.7),
        ("preorder_hold", 0.6),
        ("declined", 0.6),
        ("rejected", 0.4),
    ),
    "getman_hold": (("pending", 8.0), ("rejected", 2.0)),
    "vacation_hold": (("pending", 1.0),),
    "preorder_hold": (("pending", 1.0),),
    "pending": (("mark_shipped", 8.0), ("mark_canceled", 2.0)),
    "mark_shipped": (("completed", 1.0),),
    "mark_canceled": (("canceled", 1.0),),
    "completed": (("refunded", 1.0), ("chargeback", 0.5), (None, 8.5)),
}

LIFECYCLES: dict[Source, Lifecycle] = {"ccv": CCV_LIFECYCLE, "ccnow": CCNOW_LIFECYCLE}

# Where the initial population starts: spread over the lifecycle, a few already finished.
_START_WEIGHTS: dict[Source, dict[str, float]] = {
    "ccv": {
        "Processing": 3,
        "Incomplete": 3,
        "AwaitingPayment": 3,
        "Screening": 3,
        "New": 2,
        "FulfillmentInProgress": 2,
        "FulfillmentDone": 2,
        "Completed": 1,
        "Closed": 0.5,
        "Canceled": 0.5,
        "Failed": 0.5,
    },
    "ccnow": {
        "received": 2,
        "paypal_hold": 1,
        "processing": 2,
        "getman_hold": 0.5,
        "vacation_hold": 0.5,
        "preorder_hold": 0.5,
        "pending": 6,
        "mark_shipped": 1,
        "completed": 2,
        "mark_canceled": 0.5,
        "canceled": 0.5,
        "declined": 0.5,
        "rejected": 0.3,
        "refunded": 0.5,
        "chargeback": 0.2,
    },
}

# CCNow: which states `cancel` may move to mark_canceled.
_CCNOW_CANCELABLE = frozenset(
    (
        "received",
        "paypal_hold",
        "processing",
        "vacation_hold",
        "preorder_hold",
        "getman_hold",
        "pending",
    )
)
_STATUS_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_CCNOW_ORDER_FIELD = re.compile(r"^x_orderid_(\d{1,9})$", re.ASCII)
_MAX_REFERENCE_LENGTH = 256

_HTML_ERROR_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1><p>Please try again later.</p></body></html>\n"
)


# --- faults -----------------------------------------------------------------------------------

_SOURCES: dict[str, Source] = {"ccv": "ccv", "ccnow": "ccnow"}
FaultKind = Literal["maintenance", "http500", "slow", "html"]
_FAULT_KINDS: tuple[FaultKind, ...] = ("maintenance", "http500", "slow", "html")


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: `kind` on `provider` (None: both) with its share or delay in `value`."""

    kind: FaultKind
    provider: Source | None
    value: float


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse `kind[:provider][=value],...`; raise ValueError naming the bad item."""
    faults: list[Fault] = []
    seen: set[tuple[str, Source | None]] = set()
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        fault = _parse_fault(item)
        if (fault.kind, fault.provider) in seen:
            raise ValueError(f"fault {item!r}: given twice")
        seen.add((fault.kind, fault.provider))
        faults.append(fault)
    return tuple(faults)


def _parse_fault(item: str) -> Fault:
    head, has_value, value_text = item.partition("=")
    kind, _, provider = head.strip().partition(":")
    kind, provider = kind.strip(), provider.strip()
    if kind not in _FAULT_KINDS:
        raise ValueError(f"fault {item!r}: unknown kind {kind!r} (use {', '.join(_FAULT_KINDS)})")
    scope: Source | None = None
    if provider in _SOURCES:
        scope = _SOURCES[provider]
    elif provider or ":" in head:
        raise ValueError(f"fault {item!r}: unknown provider {provider!r} (use ccv or ccnow)")
    if kind == "maintenance":
        if has_value:
            raise ValueError(f"fault {item!r}: maintenance takes no value")
        return Fault("maintenance", scope, 1.0)
    if not has_value:
        raise ValueError(f"fault {item!r}: {kind} needs a value, e.g. {kind}=0.2")
    try:
        value = float(value_text)
    except ValueError:
        raise ValueError(f"fault {item!r}: value {value_text.strip()!r} is not a number") from None
    if kind == "slow":
        if not (math.isfinite(value) and 0 <= value <= 3600):
            raise ValueError(f"fault {item!r}: slow takes seconds from 0 to 3600")
        return Fault("slow", scope, value)
    if not 0 <= value <= 1:
        raise ValueError(f"fault {item!r}: {kind} takes a share from 0 to 1")
    return Fault("http500" if kind == "http500" else "html", scope, value)


# --- options, stats, orders -------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxOptions:
    """What the simulator serves and how it behaves; validated at construction."""

    orders: int = 20  # CCV orders and CCNow orders each
    seed: int = 1
    speed: float = 1.0  # lifecycle speed multiplier: 1.0 = a step every ~4 s on average
    drop_notifications: float = 0.3  # share of CCV notification calls silently not made
    faults: str = ""  # SPEC, see parse_faults
    ccv_api_key: str = "t_sandbox"  # HTTP Basic, key as user, empty password
    ccnow_client_id: str = "sandbox"
    ccnow_password: str = "sandbox"
    advance: bool = True  # False: orders move only when told

    def __post_init__(self) -> None:
        if not 0 <= self.orders <= 1_000_000:
            raise ValueError(f"orders must be from 0 to 1000000, not {self.orders}")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be a positive number, not {self.speed}")
        if not 0 <= self.drop_notifications <= 1:
            raise ValueError(
                f"drop_notifications must be from 0 to 1, not {self.drop_notifications}"
            )
        if not self.ccv_api_key or ":" in self.ccv_api_key:
            raise ValueError("ccv_api_key must be non-empty and without ':'")
        parse_faults(self.faults)


History = list[tuple[float, str]]


@dataclass
class SandboxStats:
    """Counters of what the simulator served and did, and every order's status history."""

    ccv_requests: int = 0
    ccnow_requests: int = 0
    ccnow_max_batch: int = 0
    notifications_sent: int = 0
    notifications_dropped: int = 0
    transitions: int = 0
    # source -> order id -> [(time, status), ...], first entry the status the order started in
    history: dict[str, dict[str, History]] = field(default_factory=lambda: {"ccv": {}, "ccnow": {}})
    # (time, CCV order id, status) of every notification deliberately not made
    dropped: list[tuple[float, str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the stats as a JSON-ready dict."""
        return {
            "ccv_requests": self.ccv_requests,
            "ccnow_requests": self.ccnow_requests,
            "ccnow_max_batch": self.ccnow_max_batch,
            "notifications_sent": self.notifications_sent,
            "notifications_dropped": self.notifications_dropped,
            "transitions": self.transitions,
            "history": {
                source: {oid: [[t, s] for t, s in hist] for oid, hist in orders.items()}
                for source, orders in self.history.items()
            },
            "dropped": [[t, oid, s] for t, oid, s in self.dropped],
        }


@dataclass(eq=False)
class _Order:
    """One simulated order (mutable state, owned by Sandbox)."""

    source: Source
    id: str
    status: str
    history: History
    external_reference: str | None = None
    notification_url: str | None = None
    notify_on: frozenset[str] = frozenset()  # empty: every status
    next_at: float | None = None
    body: bytes = b""  # CCV status answer, rebuilt on every change

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "externalReference": self.external_reference}


def _ccv_body(order: _Order) -> bytes:
    answer = {"orderStatus": order.status}
    if order.external_reference is not None:
        answer["externalReference"] = order.external_reference
    return json.dumps(answer, separators=(",", ":")).encode()


def _hyphenated(digits: int) -> str:
    text = f"{digits:09d}"
    return f"{text[:3]}-{text[3:5]}-{text[5:]}"


def check_notification_url(url: str) -> str:
    """Return `url` if CCV would call it: https, or http to a loopback host (sandbox only)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError:
        raise ValueError("notificationUrl is not a valid URL") from None
    if not host or parts.scheme not in ("http", "https"):
        raise ValueError("notificationUrl must be an http(s) URL with a host")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError("notificationUrl must be https (http only for loopback hosts)")
    return url


def _check_notify_on(values: object) -> frozenset[str]:
    ccv_statuses = known_statuses("ccv")
    if not isinstance(values, list) or not all(v in ccv_statuses for v in values):
        raise ValueError(
            f"notifyOnStatus must be a list of CCV statuses ({', '.join(ccv_statuses)})"
        )
    return frozenset(values)


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain")


# --- the simulator ----------------------------------------------------------------------------


class Sandbox:
    """Both provider APIs on one aiohttp app, with a seeded population walking its lifecycles."""

    def __init__(
        self, options: SandboxOptions, *, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.options = options
        self.stats = SandboxStats()
        self._now = now
        self._rng = random.Random(options.seed)
        self._fault_rng = random.Random(f"{options.seed}/faults")
        self._faults: dict[Source, tuple[Fault, ...]] = {"ccv": (), "ccnow": ()}
        self.set_faults(options.faults)
        self._ccv_auth = "Basic " + base64.b64encode(f"{options.ccv_api_key}:".encode()).decode()
        self._ccv: dict[str, _Order] = {}
        self._ccnow: dict[str, _Order] = {}
        # (due time, tie-breaker, order); entries whose time no longer matches are stale
        self._due: list[tuple[float, int, _Order]] = []
        self._due_seq = 0
        self._wake = asyncio.Event()
        self._advance_task: asyncio.Task[None] | None = None
        self._notify_tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._populate()
        self.app = self._make_app()

    # --- public API ---------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> str:
        """Serve the app on host:port (0 picks a free port); return the base URL."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=STOP_GRACE_S)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        return f"http://{shown_host}:{bound_port}"

    async def stop(self) -> None:
        """Stop serving, the lifecycle and notifications in flight; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._shutdown()

    def ccv_order_ids(self) -> list[str]:
        """Return the CCV order ids, in creation order."""
        return list(self._ccv)

    def ccnow_order_ids(self) -> list[str]:
        """Return the CCNow order ids (hyphenated), in creation order."""
        return list(self._ccnow)

    def status(self, source: str, order_id: str) -> str:
        """Return an order's current status; KeyError when unknown."""
        return self._order(source, order_id).status

    def set_status(self, source: str, order_id: str, status: str) -> None:
        """Move one order to `status` now and notify as CCV would (needs a running event loop).

        Any status word is accepted, so that handling of undocumented statuses can be tested.
        """
        order = self._order(source, order_id)
        if not _STATUS_WORD.match(status):
            raise ValueError(f"not a status word: {status!r}")
        if status != order.status:
            self._change(order, status, self._now(), self._rng_for(order, "set"))

    def create_ccv_order(
        self,
        external_reference: str | None = None,
        notification_url: str | None = None,
        notify_on: list[str] | None = None,
    ) -> str:
        """Create a CCV order in status Processing; return its id. ValueError on bad input."""
        if external_reference is not None and not (
            isinstance(external_reference, str)
            and 0 < len(external_reference) <= _MAX_REFERENCE_LENGTH
        ):
            raise ValueError(f"externalReference must be 1 to {_MAX_REFERENCE_LENGTH} characters")
        url = None if notification_url is None else check_notification_url(notification_url)
        statuses = frozenset() if notify_on is None else _check_notify_on(notify_on)
        order = self._add("ccv", self._new_ccv_id(), "Processing", external_reference)
        order.notification_url = url
        order.notify_on = statuses
        self._schedule(order, order.history[0][0], self._rng_for(order, "start"))
        return order.id

    def set_notification(
        self, order_id: str, notification_url: str | None, notify_on: list[str] | None = None
    ) -> None:
        """Give an existing CCV order a notification URL (None: no notifications)."""
        order = self._order("ccv", order_id)
        order.notification_url = (
            None if notification_url is None else check_notification_url(notification_url)
        )
        order.notify_on = frozenset() if notify_on is None else _check_notify_on(notify_on)

    def set_faults(self, spec: str) -> None:
        """Replace the active faults with SPEC ('' clears them); ValueError on a bad SPEC."""
        faults = parse_faults(spec)
        self._faults = {
            source: tuple(f for f in faults if f.provider in (None, source))
            for source in ("ccv", "ccnow")
        }

    def advance(self) -> int:
        """Take every lifecycle step due by now(); return how many status changes it made."""
        now = self._now()
        moved = 0
        while self._due and self._due[0][0] <= now:
            at, _, order = heapq.heappop(self._due)
            if order.next_at != at:
                continue
            order.next_at = None
            choices = LIFECYCLES[order.source].get(order.status, ())
            if not choices:
                continue
            rng = self._rng_for(order, "step")
            target = rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
            if target is not None:
                # Step from the due time, not from now, so a late tick replays the same walk.
                self._change(order, target, at, rng)
                moved += 1
        return moved

    # --- population and lifecycle -------------------------------------------------------------

    def _populate(self) -> None:
        t0 = self._now()
        for source in ("ccv", "ccnow"):
            weights = _START_WEIGHTS[source]
            for index in range(self.options.orders):
                starts = self._rng.choices(list(weights), weights=list(weights.values()))
                if source == "ccv":
                    ref = f"ref-{index + 1:06d}" if self._rng.random() < 0.5 else None
                    order = self._add("ccv", self._new_ccv_id(), starts[0], ref, t0)
                else:
                    order = self._add("ccnow", self._new_ccnow_id(), starts[0], None, t0)
                self._schedule(order, t0, self._rng_for(order, "start"))

    def _new_ccv_id(self) -> str:
        while True:
            oid = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            if oid not in self._ccv:
                return oid

    def _new_ccnow_id(self) -> str:
        while True:
            oid = _hyphenated(self._rng.randrange(100_000_000, 1_000_000_000))
            if oid not in self._ccnow:
                return oid

    def _add(
        self,
        source: Source,
        oid: str,
        status: str,
        ref: str | None,
        at: float | None = None,
    ) -> _Order:
        at = self._now() if at is None else at
        history: History = [(at, status)]
        order = _Order(source, oid, status, history, external_reference=ref)
        self.stats.history[source][oid] = history
        if source == "ccv":
            order.body = _ccv_body(order)
            self._ccv[oid] = order
        else:
            self._ccnow[oid] = order
        return order

    def _order(self, source: str, order_id: str) -> _Order:
        if source == "ccv":
            return self._ccv[order_id]
        if source == "ccnow":
            try:
                return self._ccnow[normalize_ccnow_id(order_id)]
            except InvalidOrderId:
                raise KeyError(order_id) from None
        raise KeyError(source)

    def _rng_for(self, order: _Order, purpose: str) -> random.Random:
        # One stream per order and step: an order's walk depends on the seed and its own history
        # only, never on how the ticks of other orders interleave.
        step = len(order.history)
        return random.Random(f"{self.options.seed}/{order.source}/{order.id}/{step}/{purpose}")

    def _change(self, order: _Order, status: str, at: float, rng: random.Random) -> None:
        previous = order.status
        order.status = status
        order.history.append((at, status))
        self.stats.transitions += 1
        log.debug(
            "sandbox.transition",
            extra={
                "fields": {
                    "source": order.source,
                    "order_id": order.id,
                    "from": previous,
                    "to": status,
                }
            },
        )
        if order.source == "ccv":
            order.body = _ccv_body(order)
            self._maybe_notify(order, at, rng)
        self._schedule(order, at, rng)

    def _schedule(self, order: _Order, at: float, rng: random.Random) -> None:
        order.next_at = None
        if not self.options.advance or not LIFECYCLES[order.source].get(order.status):
            return
        delay = rng.expovariate(1.0 / MEAN_STEP_S) / self.options.speed
        order.next_at = at + delay
        self._due_seq += 1
        heapq.heappush(self._due, (order.next_at, self._due_seq, order))
        self._wake.set()

    async def _advance_loop(self) -> None:
        while True:
            self.advance()
            self._wake.clear()
            delay = MAX_IDLE_S
            if self._due:
                delay = min(MAX_IDLE_S, max(0.0, self._due[0][0] - self._now()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    # --- CCV notifications --------------------------------------------------------------------

    def _maybe_notify(self, order: _Order, at: float, rng: random.Random) -> None:
        url = order.notification_url
        if url is None or (order.notify_on and order.status not in order.notify_on):
            return
        if rng.random() < self.options.drop_notifications:
            self.stats.notifications_dropped += 1
            self.stats.dropped.append((at, order.id, order.status))
            log.debug(
                "sandbox.notification_dropped",
                extra={"fields": {"order_id": order.id, "status": order.status}},
            )
            return
        self.stats.notifications_sent += 1
        task = asyncio.get_running_loop().create_task(self._post_notification(order.id, url))
        self._notify_tasks.add(task)
        task.add_done_callback(self._notify_tasks.discard)

    async def _post_notification(self, order_id: str, url: str) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        # Like CCV: one POST, no body, no retry; the answer does not matter.
        try:
            async with self._session.post(
                url, data=b"", timeout=aiohttp.ClientTimeout(total=NOTIFICATION_TIMEOUT_S)
            ) as response:
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.debug(
                "sandbox.notification_failed",
                extra={"fields": {"order_id": order_id, "error": type(exc).__name__}},
            )
            return
        log.debug(
            "sandbox.notification_sent",
            extra={"fields": {"order_id": order_id, "http_status": status}},
        )

    async def _shutdown(self) -> None:
        task, self._advance_task = self._advance_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._notify_tasks:
            _, pending = await asyncio.wait(set(self._notify_tasks), timeout=STOP_GRACE_S)
            for leftover in pending:
                leftover.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- HTTP ---------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(CCV_STATUS_PATH, self._ccv_status)
        app.router.add_post(CCV_SUBMIT_PATH, self._ccv_submit)
        app.router.add_post(CCNOW_PATH, self._ccnow_receive)
        app.router.add_get("/_sandbox/orders", self._admin_orders)
        app.router.add_post("/_sandbox/orders/{source}/{orderId}", self._admin_set_status)
        app.router.add_post("/_sandbox/faults", self._admin_faults)
        app.router.add_get("/_sandbox/stats", self._admin_stats)
        app.cleanup_ctx.append(self._lifecycle_ctx)
        return app

    async def _lifecycle_ctx(self, app: web.Application) -> AsyncIterator[None]:
        if self.options.advance:
            self._advance_task = asyncio.get_running_loop().create_task(self._advance_loop())
        yield
        await self._shutdown()

    async def _fault_response(self, source: Source) -> web.StreamResponse | None:
        faults = self._faults[source]
        delay = max((f.value for f in faults if f.kind == "slow"), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        for fault in faults:
            if fault.kind == "maintenance":
                if source == "ccv":
                    return _json_error(503, "service unavailable")
                return _text("error_message system down for maintenance\n")
            if fault.kind == "http500" and self._fault_rng.random() < fault.value:
                return web.Response(status=500, text="500 Internal Server Error")
            if fault.kind == "html" and self._fault_rng.random() < fault.value:
                return web.Response(text=_HTML_ERROR_PAGE, content_type="text/html")
        return None

    async def _ccv_gate(self, request: web.Request) -> web.StreamResponse | None:
        """Count a CCV request; answer it here when a fault or a wrong key says so."""
        self.stats.ccv_requests += 1
        if self._faults["ccv"]:
            faulted = await self._fault_response("ccv")
            if faulted is not None:
                return faulted
        if request.headers.get("Authorization") != self._ccv_auth:
            return _json_error(401, "unauthorized")
        return None

    async def _ccv_status(self, request: web.Request) -> web.StreamResponse:
        refused = await self._ccv_gate(request)
        if refused is not None:
            return refused
        order = self._ccv.get(request.match_info["orderId"])
        if order is None:
            return _json_error(404, "order not found")
        return web.Response(body=order.body, content_type="application/json")

    async def _ccv_submit(self, request: web.Request) -> web.StreamResponse:
        refused = await self._ccv_gate(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _json_error(400, "body is not JSON")
        try:
            ref, url, notify_on = _parse_submit(body)
            oid = self.create_ccv_order(ref, url, notify_on)
        except ValueError as exc:
            return _json_error(400, str(exc))
        return web.json_response({"orderId": oid}, status=201)

    async def _ccnow_receive(self, request: web.Request) -> web.StreamResponse:
        self.stats.ccnow_requests += 1
        if self._faults["ccnow"]:
            faulted = await self._fault_response("ccnow")
            if faulted is not None:
                return faulted
        try:
            form = await request.post()
        except ValueError:  # undecodable form data
            return web.Response(status=400, text="error_message bad request\n")
        if (
            form.get("x_clientid") != self.options.ccnow_client_id
            or form.get("x_password") != self.options.ccnow_password
        ):
            return _text("error_message invalid login\n")
        numbered: dict[int, str] = {}
        for key, value in form.items():
            match = _CCNOW_ORDER_FIELD.match(key)
            if match and isinstance(value, str):
                numbered.setdefault(int(match.group(1)), value)
        if not numbered:
            pending = [oid for oid, order in self._ccnow.items() if order.status == "pending"]
            if not pending:
                return _text("message no_pending_orders\n")
            return _text("".join(f"{oid} pending\n" for oid in pending))
        self.stats.ccnow_max_batch = max(self.stats.ccnow_max_batch, len(numbered))
        lines = []
        for n in sorted(numbered):
            action = form.get(f"x_action_{n}")
            lines.append(self._ccnow_line(numbered[n], action if isinstance(action, str) else ""))
        return _text("".join(f"{line}\n" for line in lines))

    def _ccnow_line(self, raw_id: str, action: str) -> str:
        try:
            oid = normalize_ccnow_id(raw_id)
        except InvalidOrderId:
            return f"{''.join(raw_id.split()) or '-'} error_message invalid order id"
        order = self._ccnow.get(oid)
        if order is None:
            return f"{oid} error_message unknown order"
        action = action.strip()
        if action == "ship":
            if order.status != "pending":
                return f"{oid} error_message order not pending"
            self._change(order, "mark_shipped", self._now(), self._rng_for(order, "ship"))
        elif action == "cancel":
            if order.status not in _CCNOW_CANCELABLE:
                return f"{oid} error_message order cannot be canceled"
            self._change(order, "mark_canceled", self._now(), self._rng_for(order, "cancel"))
        elif action not in ("query", "adjust", "track"):
            return f"{oid} error_message invalid action"
        return f"{oid} {order.status}"

    async def _admin_orders(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "ccv": [order.view() for order in self._ccv.values()],
                "ccnow": [order.view() for order in self._ccnow.values()],
            }
        )

    async def _admin_set_status(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _json_error(400, "body is not JSON")
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str):
            return _json_error(400, 'body must be {"status": "..."}')
        source, oid = request.match_info["source"], request.match_info["orderId"]
        try:
            self.set_status(source, oid, status)
        except KeyError:
            return _json_error(404, "unknown source or order")
        except ValueError as exc:
            return _json_error(400, str(exc))
        return web.json_response(self._order(source, oid).view())

    async def _admin_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            spec = await request.text()
            self.set_faults(spec)
        except ValueError as exc:  # also a body that is not text
            return _json_error(400, str(exc))
        return web.json_response({"faults": spec.strip()})

    async def _admin_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats.to_json())


def _parse_submit(body: object) -> tuple[str | None, str | None, list[str] | None]:
    """Return (externalReference, notificationUrl, notifyOnStatus) of a submit-order body."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    if not isinstance(body.get("order"), dict):
        raise ValueError("order must be an object")
    if "notifyCustomerByEmail" in body and not isinstance(body["notifyCustomerByEmail"], bool):
        raise ValueError("notifyCustomerByEmail must be a boolean")
    ref = body.get("externalReference")
    if ref is not None and not isinstance(ref, str):
        raise ValueError("externalReference must be a string")
    info = body.get("statusNotificationInformation")
    if info is None:
        return ref, None, None
    if not isinstance(info, dict):
        raise ValueError("statusNotificationInformation must be an object")
    url = info.get("notificationUrl")
    if url is not None and not isinstance(url, str):
        raise ValueError("notificationUrl must be a string")
    notify_on = info.get("notifyOnStatus")
    if notify_on is not None:
        _check_notify_on(notify_on)
    return ref, url, notify_on


async def run_sandbox(
    options: SandboxOptions, host: str, port: int, *, stop: asyncio.Event | None = None
) -> None:
    """Serve the simulator until `stop` is set or the task is cancelled."""
    sandbox = Sandbox(options)
    url = await sandbox.start(host, port)
    try:
        print(f"sandbox listening on {url}", flush=True)
        print(
            f"test credentials: ccv api key {options.ccv_api_key} (HTTP Basic user, empty"
            f" password); ccnow x_clientid={options.ccnow_client_id}"
            f" x_password={options.ccnow_password}",
            flush=True,
        )
        await (stop or asyncio.Event()).wait()
    finally:
        await sandbox.stop()
