"""Bounded HTTP connections for the receiver: a cap below the open-file limit, a deadline for
each request head, fixed error pages, and quiet, rate-limited logging of junk from the network.

The receiver faces the internet. Without bounds, 1,100 idle connections took every file
descriptor, so /healthz went dark and the sinks and the database failed with "Too many open
files". At the cap, the longest-idle connection (waiting for a request head) is closed to make
room; only when every connection is busy is a new one shed with a 503. A connection whose request
head has arrived is busy until it is answered: its body is bounded by a deadline instead.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import resource
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from ..config import ReceiverConfig
from ..logs import fields
from .stopping import Stopping

log = logging.getLogger("reconciler.server.http")

MAX_DEFAULT_CONNECTIONS = 1000
JUNK_LOG_INTERVAL_S = 10.0  # at most one line about malformed or refused requests per interval
CAPACITY_LOG_INTERVAL_S = 60.0  # at most one warning about a full listener per interval
HEADER_TIMEOUT_S = 10.0  # for a request head, and then for its body

# What both listeners call themselves in `Server:`: aiohttp's default names the Python and
# aiohttp versions, a banner for whoever scans an internet-facing port.
SERVER_NAME = "reconciler"
# The body is fixed: aiohttp's own 400 page echoes parser messages with bits of the request.
_ERROR_BODIES: Final[Mapping[int, bytes]] = {
    400: b'{"error": "bad request"}',
    404: b'{"error": "not found"}',
    408: b'{"error": "request timeout"}',
    413: b'{"error": "body too large"}',
    431: b'{"error": "header too large"}',
}
# Written raw (no request was read, so no response is made): its `Server:` by hand, as each
# answer of both listeners names it.
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nServer: " + SERVER_NAME.encode() + b"\r\n"
    b"Content-Type: application/json\r\nContent-Length: 17\r\nRetry-After: 5\r\n"
    b'Connection: close\r\n\r\n{"error": "busy"}'
)


# Answers a request that asks `Expect: 100-continue` and will be refused (no token, a body over
# the limit) before aiohttp invites its body; None lets it through.
ExpectScreen = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections a listener keeps open, and how long a request head (and then its
    body) may take."""

    max_connections: int | None = None  # None: derived from the open-file limit
    header_timeout_s: float = HEADER_TIMEOUT_S

    @classmethod
    def from_config(cls, receiver: ReceiverConfig) -> ConnectionLimits:
        """Take the limits of a `[receiver]` table."""
        return cls(receiver.max_connections, receiver.header_timeout_s)


def open_file_limit() -> int:
    """Return the soft RLIMIT_NOFILE of this process (a large number when unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def connection_cap(configured: int | None, nofile: int) -> int:
    """Return the connection cap: at most half the open-file limit, so that the other half stays
    for the database, the sinks and the provider connections."""
    ceiling = max(1, nofile // 2)
    if configured is None:
        return min(ceiling, MAX_DEFAULT_CONNECTIONS)
    return min(configured, ceiling)


def fixed_page(status: int) -> web.Response:
    """Return the fixed JSON page of `status`, closing the connection after it."""
    body = _ERROR_BODIES.get(status, b'{"error": "internal error"}')
    response = web.Response(status=status, body=body, content_type="application/json")
    response.force_close()
    return response


def names_no_path(request: web.BaseRequest) -> bool:
    """Whether the request target is no path (`OPTIONS *`, CONNECT's `host:port`): aiohttp's
    router then answers a plain-text 404 of its own, after a `100 Continue` when asked."""
    return not request.rel_url.path.startswith("/")


class RateLimit:
    """Lets one call through per interval and counts the ones it held back."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.held_back = 0
        self._next = 0.0

    def allow(self) -> bool:
        """Return True when a line may be written now; else count it as held back."""
        now = self.clock()
        if now < self._next:
            self.held_back += 1
            return False
        self._next = now + self.interval_s
        return True

    def take_held_back(self) -> int:
        """Return the number of lines held back since the last line, and reset it."""
        count, self.held_back = self.held_back, 0
        return count


def _is_junk(exc: BaseException | None) -> bool:
    """Whether an exception comes from malformed input or a client that went away."""
    while exc is not None:
        if isinstance(exc, (HttpProcessingError, web.RequestPayloadError, ConnectionError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class ProtocolLog:
    """aiohttp's server log without the noise: aiohttp logs every malformed request (a bad
    request line, a body that does not decompress) at error with a traceback; junk from the
    network is expected, so it becomes one debug line, at most one per interval."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._junk = RateLimit(JUNK_LOG_INTERVAL_S)

    def __getattr__(self, name: str) -> Any:
        # debug(), warning() and the rest pass through unchanged.
        return getattr(self._logger, name)

    def exception(self, msg: str, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if not _is_junk(exc):
            self._logger.error(msg, *args, exc_info=exc_info, **kwargs)
        elif self._junk.allow():
            self._logger.debug(
                "http.bad_request",
                extra=fields(error=type(exc).__name__, held_back=self._junk.take_held_back()),
            )


class _Protocol(RequestHandler):
    """aiohttp's connection handler with a fixed error page; knows whether it is idle, and
    closes at once after answering a request whose body it did not read."""

    def __init__(self, manager: _BoundedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.owner = manager
        self.last_used = manager.next_use()  # the lowest was idle the longest

    @property
    def idle(self) -> bool:
        """Whether the connection waits for a request head (none has arrived since its last
        answer): aiohttp's own test before its keep-alive close. A head that arrived but whose
        handler has not started yet is not idle; closing it made the handler read a closed
        connection."""
        return self._waiter is not None and not self._waiter.done()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.owner.forget(self)
        super().connection_lost(exc)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, *args: Any, **kwargs: Any
    ) -> Any:
        """Write the answer; when part of the request's body is still to come (a refusal
        before reading it, `Expect: 100-continue` refused), close the connection after it:
        aiohttp would read and throw away any amount for 10 s first (a lingering close)."""
        if not resp.prepared:
            # Every answer, the app's, a refusal before its router and a fixed page alike.
            resp.headers[hdrs.SERVER] = SERVER_NAME
        if self.owner.stopping.began:
            # Nothing more is taken on it (stopping.py); closed, its client sees the stop at once.
            resp.force_close()
        unread = not request.content.is_eof()
        if unread:
            resp.force_close()  # says `Connection: close`
        finished = await super().finish_response(request, resp, *args, **kwargs)
        if unread:
            self.force_close()  # the transport sends what was written, then closes
        return finished

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a request aiohttp could not parse with a fixed body, never its message."""
        self.log_exception("Error handling request", exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started, cannot send an error page")
        return fixed_page(status)


class _Shed(asyncio.Protocol):
    """A connection over the cap while every other one is busy: 503 and close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(_BUSY)
        transport.close()  # after the write is flushed


class _BoundedServer(web.Server):
    """aiohttp's low-level server with a connection cap."""

    def __init__(
        self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]], **kwargs: Any
    ) -> None:
        self.name = str(kwargs.pop("name"))
        self.max_connections = int(kwargs.pop("max_connections"))
        self.pathless_404 = bool(kwargs.pop("pathless_404"))
        self.expect_screen: ExpectScreen | None = kwargs.pop("expect_screen")
        self.stopping: Stopping = kwargs.pop("stopping")
        super().__init__(self._tracked(handler), **kwargs)
        self._open: weakref.WeakSet[_Protocol] = weakref.WeakSet()
        self._full = RateLimit(CAPACITY_LOG_INTERVAL_S)
        self._evicted = 0
        self._shed = 0
        self._uses = itertools.count()

    def _tracked(
        self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            try:
                if self.pathless_404 and names_no_path(request):
                    return fixed_page(404)
                if self.expect_screen is not None and hdrs.EXPECT in request.headers:
                    refusal = await self.expect_screen(cast(web.Request, request))
                    if refusal is not None:
                        return refusal
                return await handler(request)
            finally:
                protocol = request.protocol
                if isinstance(protocol, _Protocol):
                    protocol.last_used = self.next_use()

        return handle

    def next_use(self) -> int:
        """Return a number higher than every one given before: when a connection was last used."""
        return next(self._uses)

    def forget(self, protocol: _Protocol) -> None:
        """Stop counting a connection that closed."""
        self._open.discard(protocol)

    def __call__(self) -> asyncio.Protocol:  # type: ignore[override]
        """Make the protocol of one accepted connection, within the cap."""
        if len(self._open) >= self.max_connections and not self._evict_idle():
            self._shed += 1
            self._log_full()
            return _Shed()
        protocol = _Protocol(self, loop=self._loop, **self._kwargs)
        self._open.add(protocol)
        return protocol

    def _evict_idle(self) -> bool:
        idle = [p for p in self._open if p.idle]
        if not idle:
            return False
        oldest = min(idle, key=lambda p: p.last_used)
        self._open.discard(oldest)
        oldest.force_close()
        self._evicted += 1
        self._log_full()
        return True

    def _log_full(self) -> None:
        if self._full.allow():
            log.warning(
                f"{self.name}.at_capacity",
                extra=fields(
                    max_connections=self.max_connections,
                    idle_closed=self._evicted,
                    shed=self._shed,
                ),
            )
            self._evicted = self._shed = 0


class BoundedRunner(web.AppRunner):
    """An AppRunner whose server caps connections and closes slow or idle ones."""

    def __init__(
        self,
        app: web.Application,
        limits: ConnectionLimits,
        *,
        name: str,
        stopping: Stopping,
        pathless_404: bool = False,
        expect_screen: ExpectScreen | None = None,
        **kwargs: Any,
    ) -> None:
        # keepalive_timeout runs from the moment a connection opens or answered its last
        # request until a complete request head has arrived: the header and idle timeout.
        # auto_decompress: aiohttp's decoder takes a gzip body cut short as whole; bodies are
        # decoded by http.read_body, which checks that each stream ends.
        super().__init__(
            app,
            logger=ProtocolLog(log),
            keepalive_timeout=limits.header_timeout_s,
            auto_decompress=False,
            **kwargs,
        )
        self.max_connections = connection_cap(limits.max_connections, open_file_limit())
        # The receiver's: a target that is no path gets the fixed 404 before any route. The API
        # leaves it to its guard (401 first, then its own JSON 404).
        self.pathless_404 = pathless_404
        self.name = name  # of the listener, in its `at_capacity` warning
        self.expect_screen = expect_screen
        self.stopping = stopping  # the listener's stop: every answer after it closes

    async def _make_server(self) -> web.Server:
        # aiohttp has no public hook for the protocol factory: take the server the app makes
        # (which also runs the app's startup) and serve its handler through a bounded one.
        server = await super()._make_server()
        return _BoundedServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            name=self.name,
            max_connections=self.max_connections,
            pathless_404=self.pathless_404,
            expect_screen=self.expect_screen,
            stopping=self.stopping,
            **self._kwargs,
        )
