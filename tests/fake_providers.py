"""Loopback fakes of the CCV status endpoint and the CCNow order receiver, for any test.

Each fake answers from plain attributes a test sets before or during a run: the orders it knows,
scripted replies (HTTP status, body, Retry-After, delay), a switch to hold every request, and it
records what it received: requests, form fields, batch sizes, the most requests in flight.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.config import CCNowConfig, CCVConfig, RetryConfig, ScheduleConfig, Secret
from reconciler.model import normalize_ccnow_id

CCV_KEY = "t_fake-ccv-key-3f9a1c"
CCNOW_CLIENT_ID = "amylove"
CCNOW_PASSWORD = "fake-ccnow-password-77e1"
CCV_STATUS_PATH = "/api/ordercompletion/reseller/order/{order_id}/status"
CCNOW_PATH = "/cgi-local/oapi_receive.cgi"

_Fake = TypeVar("_Fake", bound="_FakeServer")

# Retries that cost milliseconds, so that tests of retry paths stay fast.
FAST_RETRY = RetryConfig(attempts=2, backoff_s=0.001, max_backoff_s=0.01)
SCHEDULE = ScheduleConfig(min_interval_s=60, max_interval_s=3600)


def ccv_config(base_url: str, **changes: Any) -> CCVConfig:
    """Return a CCV account config for a fake; keyword arguments replace fields."""
    config = CCVConfig(
        name="default",
        base_url=base_url,
        api_key=Secret(CCV_KEY),
        poll_interval_s=300,
        concurrency=4,
        timeout_s=2.0,
        retry=FAST_RETRY,
        schedule=SCHEDULE,
    )
    return replace(config, **changes)


def ccnow_config(url: str, **changes: Any) -> CCNowConfig:
    """Return a CCNow account config for a fake; keyword arguments replace fields."""
    config = CCNowConfig(
        name="default",
        url=url,
        client_id=CCNOW_CLIENT_ID,
        password=Secret(CCNOW_PASSWORD),
        store_id="",
        poll_interval_s=120,
        batch_size=25,
        concurrency=2,
        timeout_s=2.0,
        retry=FAST_RETRY,
        schedule=SCHEDULE,
    )
    return replace(config, **changes)


class _Stamped:
    """Equal to a wall-clock time of this test run: what a client's observation carries as
    `asked` (when its request was sent), for expected observations to compare equal."""

    started = time.time()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and self.started <= other <= time.time()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "STAMPED"


STAMPED = cast(float, _Stamped())


@dataclass(frozen=True)
class Reply:
    """A scripted answer: HTTP status, body, extra headers, and how long to wait before it.
    `framed=False` sends the body with neither Content-Length nor chunking and closes the
    connection after it: the one answer a client cannot tell cut short (`cut_off`); `chunked`
    sends it in chunks, ended cleanly (as a web server ends a CGI's answer, whole or not)."""

    status: int = 200
    body: str | bytes = ""
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    framed: bool = True
    chunked: bool = False


@dataclass(frozen=True)
class Raw(Reply):
    """An answer sent as the bytes `raw` exactly, in one write on the socket, the connection
    closed after it: what aiohttp's server never sends (a chunk broken right after the headers,
    a header line past 8 KiB), all in the client's first read."""

    raw: bytes = b""


def raw_answer(request: web.Request, reply: Raw) -> web.StreamResponse:
    """Send a Raw answer and close its connection (the response returned is never sent)."""
    assert request.transport is not None
    request.transport.write(reply.raw)
    request.transport.close()
    return web.Response()


def cut_off(body: str) -> Reply:
    """Return an answer that ends where `body` does, its connection closed (no length given),
    as a link lost mid-answer leaves it."""
    return Reply(200, body, framed=False)


class _CloseDelimited(web.StreamResponse):
    """A response without length or chunking: only closing the connection ends it."""

    _length_check = False


def html_page(status: int = 200) -> Reply:
    """Return the kind of page a proxy or a login wall answers with."""
    body = "<!DOCTYPE html>\n<html><body><h1>Service Unavailable</h1></body></html>\n"
    return Reply(status, body, content_type="text/html")


@dataclass(frozen=True)
class Seen:
    """One request as a fake received it."""

    at: float  # loop time
    raw_path: str
    headers: Mapping[str, str]
    order_id: str | None = None  # CCV: the decoded path segment
    form: Mapping[str, str] = field(default_factory=dict)  # CCNow: the posted fields


class _FakeServer:
    """What both fakes share: the server, scripted replies, holds and request bookkeeping."""

    def __init__(self) -> None:
        # Replies used one per request, before anything else; then `always`, if set.
        self.script: list[Reply] = []
        self.always: Reply | None = None
        # Every request waits this long, or until `hold` is set.
        self.delay_s = 0.0
        self.hold: asyncio.Event | None = None
        # Requests this picks are answered as things stood when they arrived, once `release`
        # is set: an answer that comes after the answers of requests sent after it.
        self.answer_late: Callable[[Seen], bool] | None = None
        self.release = asyncio.Event()
        self.requests: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._closing = asyncio.Event()
        self._changed = asyncio.Condition()
        self._server: TestServer | None = None

    def routes(self) -> list[web.RouteDef]:
        """Return the routes of the fake."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """Return `http://127.0.0.1:<port>` of the running fake."""
        assert self._server is not None, "fake not started"
        return str(self._server.make_url("")).rstrip("/")

    async def start(self: _Fake) -> _Fake:
        """Start listening on a free loopback port."""
        app = web.Application()
        app.add_routes(self.routes())
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def close(self) -> None:
        """Release held requests and stop the server."""
        self._closing.set()
        self.release.set()
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            await self._server.close()

    async def stop_listening(self) -> None:
        """Stop taking connections (a new one is refused); those taken are still answered."""
        assert self._server is not None and self._server.runner is not None, "fake not started"
        for site in list(self._server.runner.sites):
            await site.stop()

    async def __aenter__(self: _Fake) -> _Fake:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Wait until `predicate()` holds after some request arrived or finished. The default
        bound is for a loaded machine, where a client's start and its first requests take many
        times their time alone; it costs a test nothing when the requests come."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout_s)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _pause(self, seconds: float) -> None:
        # Ends early when the fake closes, so that a test never waits for a slow answer.
        if seconds > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)

    async def _answer(
        self, request: web.Request, seen: Seen, build: Callable[[], Reply]
    ) -> web.StreamResponse:
        self.requests.append(seen)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await self._notify()
        try:
            early = None
            if self.answer_late is not None and self.answer_late(seen):
                early = self._chosen(build)
                await self.release.wait()
            if self.hold is not None:
                await self.hold.wait()
            await self._pause(self.delay_s)
            reply = early or self._chosen(build)
            await self._pause(reply.delay_s)
            if isinstance(reply, Raw):
                return raw_answer(request, reply)
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            # Sent as the header itself: aiohttp's `content_type` takes no parameters (charset).
            headers = {"Content-Type": reply.content_type, **reply.headers}
            if not reply.framed:
                return await _close_delimited(request, reply.status, body, headers)
            if reply.chunked:
                return await _chunked(request, reply.status, body, headers)
            return web.Response(status=reply.status, body=body, headers=headers)
        finally:
            self.in_flight -= 1
            await self._notify()

    def _chosen(self, build: Callable[[], Reply]) -> Reply:
        if self.script:
            return self.script.pop(0)
        if self.always is not None:
            return self.always
        return build()


class FakeCCV(_FakeServer):
    """The CCV order status endpoint: `orders` (id -> orderStatus), `refs` (id -> reference).

    Per request: a wrong credential gets 401; then `script_for[id]` (used up one per request),
    `script`, `replies[id]`, `always`; else 200 JSON for a known order, 404 for others.
    """

    def __init__(
        self,
        *,
        api_key: str = CCV_KEY,
        auth: str = "basic",
        auth_header: str = "Authorization",
    ) -> None:
        super().__init__()
        self.orders: dict[str, str] = {}
        self.refs: dict[str, str] = {}
        self.script_for: dict[str, list[Reply]] = {}
        self.replies: dict[str, Reply] = {}
        if auth == "basic":
            token = base64.b64encode(f"{api_key}:".encode()).decode()
            self._credential = (auth_header, f"Basic {token}")
        elif auth == "bearer":
            self._credential = (auth_header, f"Bearer {api_key}")
        else:
            self._credential = (auth_header, api_key)

    def routes(self) -> list[web.RouteDef]:
        """Return the status route."""
        return [web.get(CCV_STATUS_PATH, self._status)]

    def requests_for(self, order_id: str) -> list[Seen]:
        """Return the requests that asked about one order."""
        return [seen for seen in self.requests if seen.order_id == order_id]

    async def _status(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        seen = Seen(
            asyncio.get_running_loop().time(),
            request.raw_path,
            dict(request.headers),
            order_id=order_id,
        )
        header, value = self._credential
        if request.headers.get(header) != value:
            return await self._answer(request, seen, lambda: Reply(401, "Unauthorized"))
        queued = self.script_for.get(order_id)
        if queued:
            reply = queued.pop(0)
            return await self._answer(request, seen, lambda: reply)
        return await self._answer(request, seen, lambda: self._order_reply(order_id))

    def _order_reply(self, order_id: str) -> Reply:
        if order_id in self.replies:
            return self.replies[order_id]
        if order_id not in self.orders:
            return Reply(404, json.dumps({"message": "Not found"}), "application/json")
        document = {"orderStatus": self.orders[order_id]}
        if order_id in self.refs:
            document["externalReference"] = self.refs[order_id]
        return Reply(200, json.dumps(document), "application/json")


class FakeCCNow(_FakeServer):
    """The CCNow order receiver: `orders` (hyphenated id -> status word).

    A wrong login gets `error_message invalid login` (with HTTP 200, as CCNow documents no
    status). Then `script`, `always`; then, for a post naming orders, `replies_for[id]` of the
    first order it names that has one, else `queries`; then, for a post carrying no action,
    `reads` (used up); else the pending list (orders whose
    status is in `pending_statuses`) or one line per queried order. Answer shaping:
    `order_errors` ids get a
    per-order error line, `omit` ids no line, `extra_lines` are appended, `shuffle` reorders,
    `hyphenless` drops hyphens, `line_end` and `blank_lines` vary the layout.
    """

    def __init__(
        self,
        *,
        client_id: str = CCNOW_CLIENT_ID,
        password: str = CCNOW_PASSWORD,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.password = password
        self.orders: dict[str, str] = {}
        self.pending_statuses = {"pending"}
        # Orders the pending list names with this word whatever their status: CCNow's list
        # lagging behind its queries and actions' answers.
        self.list_lags: dict[str, str] = {}
        self.order_errors: set[str] = set()
        self.replies_for: dict[str, Reply] = {}  # a post naming that (hyphenated) id
        self.queries: Reply | None = None  # every post naming orders (the list as usual)
        self.omit: set[str] = set()
        self.extra_lines: list[str] = []
        # A post carrying an action applies it, then is answered these lines (a status query
        # is answered as usual).
        self.actions_answer: list[str] | None = None
        # A post carrying an action applies it, then is answered the first of these (used up),
        # as a gateway or a lost link answers a post CCNow ran.
        self.after_applying: list[Reply] = []
        self.shuffle = False
        self.hyphenless = False
        self.line_end = "\n"
        self.blank_lines = False
        self.batch_sizes: list[int] = []
        # A bound on a post's body in bytes, as a proxy before CCNow keeps (None: none): a
        # larger post is answered 413 and reaches nothing (its batch size is still counted).
        self.max_post_bytes: int | None = None
        # (order id, action, {field name without _N: value}) of every action applied
        self.actions: list[tuple[str, str, dict[str, str]]] = []
        # A post carrying no action (the pending list, a status query) is answered the first of
        # these (used up): a read turned away while the actions' posts go through.
        self.reads: list[Reply] = []

    @property
    def url(self) -> str:
        """Return the order receiver URL of the running fake."""
        return self.base_url + CCNOW_PATH

    @property
    def max_batch(self) -> int:
        """Return the most orders seen in one post."""
        return max(self.batch_sizes, default=0)

    def routes(self) -> list[web.RouteDef]:
        """Return the receiver route."""
        return [web.post(CCNOW_PATH, self._receive)]

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        form = {key: str(value) for key, value in (await request.post()).items()}
        seen = Seen(
            asyncio.get_running_loop().time(),
            request.raw_path,
            dict(request.headers),
            form=form,
        )
        ids: list[str] = []
        while f"x_orderid_{len(ids) + 1}" in form:
            ids.append(form[f"x_orderid_{len(ids) + 1}"])
        self.batch_sizes.append(len(ids))
        if self.max_post_bytes is not None and len(await request.read()) > self.max_post_bytes:
            return await self._answer(request, seen, lambda: Reply(413, "Payload Too Large"))
        if form.get("x_clientid") != self.client_id or form.get("x_password") != self.password:
            return await self._answer(
                request, seen, lambda: Reply(200, "error_message invalid login\n")
            )
        named = [normalize_ccnow_id(i) for i in ids]
        reply = next((self.replies_for[i] for i in named if i in self.replies_for), None)
        if reply is None and named:
            reply = self.queries
        if reply is not None:
            chosen = reply
            return await self._answer(request, seen, lambda: chosen)
        acting = any(form.get(f"x_action_{n}", "query") != "query" for n in range(1, len(ids) + 1))
        if not acting and self.reads:
            read = self.reads.pop(0)
            return await self._answer(request, seen, lambda: read)
        if acting and self.after_applying:
            self._lines(ids, form)
            lost = self.after_applying.pop(0)
            return await self._answer(request, seen, lambda: lost)
        if acting and self.actions_answer is not None:
            self._lines(ids, form)
            lines = self.actions_answer
            return await self._answer(
                request, seen, lambda: Reply(200, "".join(f"{x}\n" for x in lines))
            )
        return await self._answer(request, seen, lambda: self._text(self._lines(ids, form)))

    def _act(self, n: int, order_id: str, form: Mapping[str, str]) -> str | None:
        """Apply `x_action_N` as the Order Update API describes it; return an error line."""
        action = form.get(f"x_action_{n}", "query")
        if action == "query":
            return None
        if self.orders.get(order_id) != "pending":
            return f"{order_id} error_message order not pending"
        needs = {"adjust": ("x_amount",), "track": ("x_trackname", "x_tracknumber")}
        if any(not form.get(f"{name}_{n}") for name in needs.get(action, ())):
            return f"{order_id} error_message missing field"
        self.actions.append(
            (
                order_id,
                action,
                {k.rsplit("_", 1)[0]: v for k, v in form.items() if k.endswith(f"_{n}")},
            )
        )
        self.orders[order_id] = {"ship": "mark_shipped", "cancel": "mark_canceled"}.get(
            action, "pending"
        )
        return None

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        if not ids:
            listed = {i: s for i, s in self.orders.items() if s in self.pending_statuses}
            listed.update(self.list_lags)
            return [f"{i} {s}" for i, s in listed.items()] or ["message no_pending_orders"]
        lines = []
        for n, raw in enumerate(ids, 1):
            order_id = normalize_ccnow_id(raw)
            error = self._act(n, order_id, form or {})
            if order_id in self.omit:
                continue
            if error is not None:
                lines.append(error)
            elif order_id in self.order_errors:
                lines.append(f"{order_id} error unknown order")
            elif order_id in self.orders:
                lines.append(f"{order_id} {self.orders[order_id]}")
            else:
                # What CCNow's sandbox answers for an order the account does not have.
                lines.append(f"{order_id} error_message unknown order")
        return lines

    def _text(self, lines: list[str]) -> Reply:
        lines = lines + self.extra_lines
        if self.shuffle:
            random.Random(7).shuffle(lines)
        if self.hyphenless:
            lines = [line.replace("-", "", 2) for line in lines]
        if self.blank_lines:
            lines = ["", *(f"  {line} \t" for line in lines), "", ""]
        return Reply(200, self.line_end.join(lines) + self.line_end)


async def _close_delimited(
    request: web.Request, status: int, body: bytes, headers: Mapping[str, str]
) -> web.StreamResponse:
    response = _CloseDelimited(status=status, headers=headers)
    response.force_close()
    await response.prepare(request)
    await response.write(body)
    await response.write_eof()
    return response


async def _chunked(
    request: web.Request, status: int, body: bytes, headers: Mapping[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(status=status, headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(body)
    await response.write_eof()
    return response
