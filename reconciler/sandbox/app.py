"""The simulator's HTTP app: both provider APIs and the admin endpoints, on one aiohttp server."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from .. import strict_json
from .ccnow import CCNOW_PATH, ccnow_answer, has_action
from .ccv_writes import PRICING_PATH, PRICING_SET, check_pricing_fields, parse_submit
from .faults import Faults, drop_connection, json_error, send_cut_off
from .model import World, check_notify_on
from .notifications import STOP_GRACE_S, Notifier
from .options import SandboxOptions, SandboxStats, check_notification_url

log = logging.getLogger("reconciler.sandbox")

CCV_STATUS_PATH = "/api/ordercompletion/reseller/order/{orderId}/status"
CCV_SUBMIT_PATH = "/api/ordercompletion/reseller/order"


def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain")


def _json_body(raw: bytes) -> object:
    """A request's JSON body; ValueError for one that is not JSON, nests deeper than Python's
    parser goes, or holds half a character (a lone surrogate): kept, it made the order list
    (`/_sandbox/orders`) unreadable."""
    try:
        return strict_json.given(raw, exact=False)
    except strict_json.NotJSON as exc:
        raise ValueError(f"body is not JSON: {exc}") from None


@web.middleware
async def _client_left(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A client that gave up (a slow fault outlasting its timeout) is a debug line, not a
    traceback at error level."""
    try:
        return await handler(request)
    except ConnectionResetError:
        log.debug("sandbox.client_left", extra={"fields": {"path": request.path}})
        return web.Response(status=400)  # never sent: the connection is gone


class Sandbox:
    """Both provider APIs on one aiohttp app, with a seeded population walking its lifecycles."""

    def __init__(
        self, options: SandboxOptions, *, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.options = options
        self.stats = SandboxStats()
        self._faults = Faults(options.faults, options.seed)
        self._notifier = Notifier(options, self.stats)
        self._world = World(options, self.stats, now=now, on_change=self._notifier.order_changed)
        self._ccv_auth = "Basic " + base64.b64encode(f"{options.ccv_api_key}:".encode()).decode()
        self._advance_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        # Set when stopping: submits held by the submit_timeout fault give up then.
        self._stopping = asyncio.Event()
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
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._shutdown()

    def ccv_order_ids(self) -> list[str]:
        """Return the CCV order ids, in creation order."""
        return list(self._world.ccv)

    def ccnow_order_ids(self) -> list[str]:
        """Return the CCNow order ids (hyphenated), in creation order."""
        return list(self._world.ccnow)

    def status(self, source: str, order_id: str) -> str:
        """Return an order's current status; KeyError when unknown."""
        return self._world.order(source, order_id).status

    def set_status(self, source: str, order_id: str, status: str) -> None:
        """Move one order to `status` now and notify as CCV would (needs a running event loop).

        Any status word is accepted, so that handling of undocumented statuses can be tested.
        """
        self._world.set_status(source, order_id, status)

    def hold(self, source: str, order_id: str, status: str) -> None:
        """Move one order to `status` now, where the lifecycle leaves it until a change from
        outside (an action, set_status); KeyError / ValueError as set_status."""
        self._world.hold(source, order_id, status)

    def create_ccv_order(
        self,
        external_reference: str | None = None,
        notification_url: str | None = None,
        notify_on: list[str] | None = None,
    ) -> str:
        """Create a CCV order in status Processing; return its id. ValueError on bad input."""
        return self._world.create_ccv_order(external_reference, notification_url, notify_on)

    def set_notification(
        self, order_id: str, notification_url: str | None, notify_on: list[str] | None = None
    ) -> None:
        """Give an existing CCV order a notification URL (None: no notifications)."""
        order = self._world.order("ccv", order_id)
        order.notification_url = (
            None if notification_url is None else check_notification_url(notification_url)
        )
        order.notify_on = frozenset() if notify_on is None else check_notify_on(notify_on)

    def set_ccnow_notification(self, url: str | None) -> None:
        """Post a CCNow order alert to `url` on every CCNow status change (None: stop)."""
        self._notifier.set_ccnow_url(url)

    def set_faults(self, spec: str) -> None:
        """Replace the active faults with SPEC ('' clears them); ValueError on a bad SPEC."""
        self._faults.set(spec)

    def advance(self) -> int:
        """Take every lifecycle step due by now(); return how many status changes it made."""
        return self._world.advance()

    async def _shutdown(self) -> None:
        task, self._advance_task = self._advance_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._notifier.close()

    # --- HTTP ---------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[_client_left])
        app.router.add_get(CCV_STATUS_PATH, self._ccv_status)
        app.router.add_post(CCV_SUBMIT_PATH, self._ccv_submit)
        app.router.add_patch(PRICING_PATH, self._ccv_pricing)
        app.router.add_post(CCNOW_PATH, self._ccnow_receive)
        app.router.add_get("/_sandbox/orders", self._admin_orders)
        app.router.add_post("/_sandbox/orders/{source}/{orderId}", self._admin_set_status)
        app.router.add_post("/_sandbox/faults", self._admin_faults)
        app.router.add_get("/_sandbox/stats", self._admin_stats)
        app.cleanup_ctx.append(self._lifecycle_ctx)
        return app

    async def _lifecycle_ctx(self, app: web.Application) -> AsyncIterator[None]:
        if self.options.advance:
            self._advance_task = asyncio.get_running_loop().create_task(self._world.run())
        yield
        await self._shutdown()

    async def _ccv_gate(self, request: web.Request) -> web.StreamResponse | None:
        """Count a CCV request; answer it here when a fault or a wrong key says so."""
        self.stats.ccv_requests += 1
        if self._faults.any("ccv"):
            faulted = await self._faults.response("ccv")
            if faulted is not None:
                return faulted
        if request.headers.get("Authorization") != self._ccv_auth:
            return json_error(401, "unauthorized")
        return None

    async def _ccv_status(self, request: web.Request) -> web.StreamResponse:
        refused = await self._ccv_gate(request)
        if refused is not None:
            return refused
        order = self._world.ccv.get(request.match_info["orderId"])
        if order is None:
            return json_error(404, "order not found")
        return web.Response(body=order.body, content_type="application/json")

    async def _ccv_submit(self, request: web.Request) -> web.StreamResponse:
        refused = await self._ccv_gate(request)
        if refused is not None:
            return refused
        try:
            body = _json_body(await request.read())
        except ValueError as exc:
            return json_error(400, str(exc))
        try:
            ref, url, notify_on = parse_submit(body)
            oid = self.create_ccv_order(ref, url, notify_on)
        except ValueError as exc:
            return json_error(400, str(exc))
        if self._faults.submit_answer_lost():
            return await self._never_answer(request, oid)
        return web.json_response({"orderId": oid}, status=201)

    async def _never_answer(self, request: web.Request, order_id: str) -> web.StreamResponse:
        """Hold a submit whose order exists until the sandbox stops, then drop the connection:
        the client times out not knowing whether its order was made."""
        self.stats.submits_unanswered += 1
        log.debug("sandbox.submit_unanswered", extra={"fields": {"order_id": order_id}})
        await self._stopping.wait()
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=504)  # never sent: the connection is gone

    async def _ccv_pricing(self, request: web.Request) -> web.StreamResponse:
        refused = await self._ccv_gate(request)
        if refused is not None:
            return refused
        try:
            check_pricing_fields(_json_body(await request.read()))
        except ValueError as exc:  # also a body that is not JSON
            return json_error(400, str(exc))
        self.stats.pricing_set += 1
        return web.json_response({"message": PRICING_SET})

    async def _ccnow_receive(self, request: web.Request) -> web.StreamResponse:
        self.stats.ccnow_requests += 1
        if self._faults.any("ccnow"):
            faulted = await self._faults.response("ccnow")
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
        answer = ccnow_answer(self._world, form)
        if self._faults.any("ccnow") and has_action(form) and self._faults.drops():
            return drop_connection(request)
        if self._faults.any("ccnow"):
            answer, cut_off = self._faults.ccnow_shape(answer)
            if cut_off:
                return await send_cut_off(request, answer)
        return _text(answer)

    async def _admin_orders(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "ccv": [order.view() for order in self._world.ccv.values()],
                "ccnow": [order.view() for order in self._world.ccnow.values()],
            }
        )

    async def _admin_set_status(self, request: web.Request) -> web.StreamResponse:
        try:
            body = _json_body(await request.read())
        except ValueError as exc:
            return json_error(400, str(exc))
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str):
            return json_error(400, 'body must be {"status": "..."}')
        source, oid = request.match_info["source"], request.match_info["orderId"]
        try:
            self.set_status(source, oid, status)
        except KeyError:
            return json_error(404, "unknown source or order")
        except ValueError as exc:
            return json_error(400, str(exc))
        return web.json_response(self._world.order(source, oid).view())

    async def _admin_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            spec = await request.text()
            self.set_faults(spec)
        except ValueError as exc:  # also a body that is not text
            return json_error(400, str(exc))
        return web.json_response({"faults": spec.strip()})

    async def _admin_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats.to_json())


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
