"""What both listeners (the receiver and the integration API) do alike: serve an app on one
address within the connection bounds, read a request body within a limit and decode it, answer
in JSON."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from ..config import ConfigError
from ..exits import TempFailure
from ..logs import fields
from ..sources.codings import BodyTooLarge, BodyUnreadable, codings_of, decoded
from .connections import BoundedRunner, ConnectionLimits, ExpectScreen
from .stopping import STOPPING, Stopping

# An app's screen of `Expect: 100-continue` requests, run before its routes (see ExpectScreen):
# aiohttp answers `100 Continue` for a path no route takes before any middleware runs.
EXPECT_SCREEN = web.AppKey[ExpectScreen]("expect_screen")


class BodyTooSlow(Exception):
    """The body did not arrive within the deadline (408)."""


def json_error(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    """Return `{"error": message, ...extra}` with `status`."""
    return web.json_response({"error": message, **(extra or {})}, status=status, headers=headers)


async def read_at_most(request: web.Request, limit: int) -> bytes:
    """Return the body, or its first `limit` bytes when it is longer; ConnectionResetError
    when the connection closed before the body was read."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit and (chunk := await request.content.read(limit - size)):
            chunks.append(chunk)
            size += len(chunk)
    except RuntimeError:
        # aiohttp's word for a body read from a connection already closed (a client gone
        # before its handler started): the client's loss, not a bug of ours.
        if request.transport is not None:
            raise
        raise ConnectionResetError("the connection closed before the body was read") from None
    return b"".join(chunks)


async def read_body(request: web.Request, limit: int, *, timeout_s: float | None = None) -> bytes:
    """Return the whole body of at most `limit` bytes, sent and decoded, reading no more than
    one byte past it (the listeners leave decoding to `decoded`)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    try:
        body = await asyncio.wait_for(read_at_most(request, limit + 1), timeout_s)
    except asyncio.TimeoutError:
        # Before OSError, its base class from 3.11 on. A trickled body would hold a
        # connection that the cap cannot take back.
        raise BodyTooSlow from None
    except (HttpProcessingError, web.RequestPayloadError, OSError):
        raise BodyUnreadable from None
    if len(body) > limit:
        raise BodyTooLarge
    return decoded(body, codings_of(request.headers.getall(hdrs.CONTENT_ENCODING, ())), limit)


class Listener:
    """Serve one app on one address within `limits` until close(), logging `<name>.listening`;
    no access log, since one line per junk request (receiver) or per call (API) would flood the
    journal. Stopped in two steps (stopping.py): stop_accepting(), then close()."""

    def __init__(
        self,
        app: web.Application,
        limits: ConnectionLimits,
        *,
        logger: logging.Logger,
        name: str,
        shutdown_timeout_s: float = 5.0,
        pathless_404: bool = False,
    ) -> None:
        if STOPPING not in app:
            app[STOPPING] = Stopping()  # an app that does not read it: its answers close alone
        self.stopping = app[STOPPING]
        self._runner = BoundedRunner(
            app,
            limits,
            name=name,
            stopping=self.stopping,
            pathless_404=pathless_404,
            expect_screen=app.get(EXPECT_SCREEN),
            access_log=None,
            shutdown_timeout=shutdown_timeout_s,
        )
        self._log = logger
        self._event = f"{name}.listening"
        self._started = False

    @property
    def max_connections(self) -> int:
        """The connection cap in force."""
        return self._runner.max_connections

    def listening_fields(self) -> dict[str, Any]:
        """Return the fields the `listening` line adds to host and port."""
        return {}

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 picks a free port) and return the bound port."""
        await self._runner.setup()
        self._started = True
        await web.TCPSite(self._runner, host, port).start()
        port = int(self._runner.addresses[0][1])
        self._log.info(self._event, extra=fields(host=host, port=port, **self.listening_fields()))
        return port

    async def start_as(self, host: str, port: int, *, file: str, key: str) -> int:
        """Listen on host:port as the config's `key` (in `file`) says and return the bound
        port. An address the system refuses this user is a config error (78): no restart
        mends it, and systemd would restart the daemon every 5 s for ever. One in use, or not
        on this host (yet), is worth trying again later (75)."""
        try:
            return await self.start(host, port)
        except OSError as exc:
            # asyncio's words wrap the system's: "error while attempting to bind on ...". A
            # host name not resolved has getaddrinfo's code, which is no errno (below 0).
            why = (
                os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
            )
            if isinstance(exc, PermissionError):
                problem = f"cannot listen on {host}:{port}: {why}"
                if port < 1024:
                    problem += (
                        " (a port below 1024 needs CAP_NET_BIND_SERVICE, which "
                        "reconciler.service does not give: choose another)"
                    )
                raise ConfigError(file, key, problem) from None
            raise TempFailure(
                f"{key.partition('.')[0]} cannot listen on {host}:{port}: {why}"
            ) from None

    async def stop_accepting(self) -> None:
        """The stop's first step: begin the app's stop (a request from now on is answered as
        the app says, `stopping`, and closes its connection) and close the listening socket:
        no connection is taken from now on, while those taken stay open until close()."""
        self.stopping.begin()
        for site in list(self._runner.sites):
            await site.stop()

    async def close(self) -> None:
        """Stop listening and close every connection: idle ones at once, requests in flight
        get the shutdown timeout to finish; then the app's cleanup runs."""
        self.stopping.begin()
        if self._started:
            self._started = False
            await self._runner.cleanup()
