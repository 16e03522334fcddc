"""The providers' connector, as a write needs it: whether a write is still getting its
connection (nothing of it has left), and the first bytes its answer brought, read again when
aiohttp refuses the answer before it makes a response of it (`answer_head`)."""

from __future__ import annotations

import asyncio
import functools
from contextvars import ContextVar
from typing import Any, NamedTuple

import aiohttp
from aiohttp import hdrs
from aiohttp.base_protocol import BaseProtocol
from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import Connection
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpResponseParser
from aiohttp.tracing import Trace

# aiohttp's bound on a status line and on a header line (8190 bytes by default): a longer one
# refuses the whole answer, a `201 Created` naming its order among it (read as one whose body
# broke instead, `answer_head`). Raised for the writes (writes/once.py), whose answers must be
# read.
LINE_MAX = 64 * 1024

# What a write keeps of its answer's first bytes: a head longer than this is read as one that
# did not come whole (`answer_head`). Past LINE_MAX, so that a head aiohttp refused for a line
# longer than that is read here.
HEARD_MAX = 256 * 1024


class Connecting:
    """Whether a write is still getting its connection (from the pool, or TCP and TLS): until
    it has one, no byte of its request has left. `heard`: the first bytes (HEARD_MAX) its answer
    brought on that connection, None until it has one (or with another connector: unknown)."""

    __slots__ = ("heard", "now")

    def __init__(self) -> None:
        self.now = False
        self.heard: bytearray | None = None


# The write under way in this task, if any (writes/once.py): its connector says when it has its
# connection, and keeps what its answer brought.
CONNECTING: ContextVar[Connecting | None] = ContextVar("reconciler_connecting", default=None)


class HeardHandler(ResponseHandler):
    """aiohttp's protocol of a write's connection, keeping the first bytes it receives while
    `heard` is set (set when the write takes the connection)."""

    heard: bytearray | None = None

    def data_received(self, data: bytes) -> None:
        """Keep what a write's answer brought, then parse it as aiohttp does."""
        heard = self.heard
        if heard is not None and len(heard) < HEARD_MAX:
            heard += data[: HEARD_MAX - len(heard)]
        super().data_received(data)


class WriteAwareConnector(aiohttp.TCPConnector):
    """The providers' connector: the reads' pool of keep-alive connections, and, for the
    writes, a connector of their own (`_WriteConnector`): each write goes out on a connection
    opened for it and closed after its answer, never one an earlier request left idle (a
    server closes an idle one when it likes, and one closed just as the write went out reads
    as an answer lost after the provider got it: an adjust `uncertain`, a CCV submit for a
    person, though the server never read it). The reads' pool is never touched by a write.
    Arguments are the TCPConnector's, given to both (`force_close` is the writes' alone)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("force_close", None)
        super().__init__(*args, **kwargs)
        self._writes = _WriteConnector(*args, **kwargs)

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        """A read's connection from the pool; a write's (one under way in this task) from the
        writes' connector: its Connection goes back there, which closes it."""
        if CONNECTING.get() is None:
            return await super().connect(req, traces, timeout)
        return await self._writes.connect(req, traces, timeout)

    async def close(self, *args: Any, **kwargs: Any) -> None:
        """Close the writes' connector and the reads' pool."""
        try:
            await self._writes.close(*args, **kwargs)
        finally:
            await super().close(*args, **kwargs)


class _WriteConnector(aiohttp.TCPConnector):
    """The writes' connector (`force_close`: a connection of its own for each, closed after its
    answer): tells a write still connecting (a handshake that never ends, a host that never
    answers the SYN) from one whose request may have left, so that the first is `NotSent`
    (safe to send again) and not `Uncertain` for ever; and keeps what a write's answer brought,
    whose status line and `Location` aiohttp loses when it refuses the rest of the answer in
    the same read (a broken chunk, a header line too long, a `br` body)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, force_close=True, **kwargs)
        # aiohttp has no public hook for the protocol its connections get. Without this one
        # (an aiohttp that renamed it) no answer would be kept, and a write whose answer aiohttp
        # refused would be taken for a lost one, closable as never sent: refused here instead.
        if not hasattr(self, "_factory"):
            raise RuntimeError(
                f"aiohttp {aiohttp.__version__} is not supported: its connector has no "
                "`_factory` (reconciler needs aiohttp 3.10 to 3.x)"
            )
        self._factory = functools.partial(_heard_handler, loop=self._loop)

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        """Get the write's connection, marking it as connecting meanwhile."""
        connecting = CONNECTING.get()
        if connecting is None:  # not through WriteAwareConnector: none is a write's
            return await super().connect(req, traces, timeout)
        connecting.now = True
        conn = await super().connect(req, traces, timeout)
        connecting.now = False
        connecting.heard = _hear(conn, bytearray())
        return conn


def _heard_handler(loop: asyncio.AbstractEventLoop) -> ResponseHandler:
    return HeardHandler(loop)


def _hear(conn: Connection, heard: bytearray | None) -> bytearray | None:
    protocol = conn.protocol
    if not isinstance(protocol, HeardHandler):
        return None
    protocol.heard = heard
    return heard


class Head(NamedTuple):
    """An answer's final status line and the headers a write reads of it (the first of each,
    as aiohttp's `headers.get`; None where it has none), and every `Location` line as it came
    (the first may point nowhere, the next at the order: writes/once.py `_location` reads
    them); `end`: where in the bytes read the final head ended (its body's first byte, as
    sent)."""

    status: int
    locations: tuple[str, ...]
    retry_after: str | None
    content_type: str
    end: int


def answer_head(
    heard: bytes, parser_type: type[HttpResponseParser] = HttpResponseParser
) -> Head | None:
    """The final head of an answer's first bytes: its status and the headers a write reads;
    None when no status line and headers came whole, or aiohttp refuses them. Read by aiohttp's
    own parser (the one its connections use), so that what is
    kept is what aiohttp would have read: a folded header line, a leading blank line, a UTF-8
    `Location`. Interim answers (`103 Early Hints`) are passed over; a `101` (an upgrade) is
    none of a write's. `parser_type`: another of aiohttp's parsers (its pure-Python one, as
    without its C extension). Called within the event loop."""
    loop = asyncio.get_running_loop()
    # No body is read: the parser stops at each head's blank line, and is fed one line at a
    # time, so that the body's bytes after the final head (what aiohttp refused) are never read.
    parser = parser_type(
        BaseProtocol(loop),
        loop,
        2**16,
        # A line aiohttp refused as longer than LINE_MAX is read here.
        max_line_size=HEARD_MAX,
        max_field_size=HEARD_MAX,
        response_with_body=False,
        auto_decompress=False,  # a `br` body's head is read, as aiohttp read it before its body
    )
    start = 0
    while (end := heard.find(b"\n", start) + 1) > 0:
        try:
            messages, upgraded, _ = parser.feed_data(heard[start:end])
        except (HttpProcessingError, ValueError):
            return None
        start = end
        for message, _payload in messages:
            if message.code == 101 or upgraded:
                return None
            if 100 <= message.code < 200:
                continue
            headers = message.headers
            return Head(
                message.code,
                tuple(headers.getall(hdrs.LOCATION, ())),
                headers.get(hdrs.RETRY_AFTER, "").strip() or None,
                headers.get(hdrs.CONTENT_TYPE, "").strip(),
                start,
            )
    return None


def body_began(heard: bytes) -> bool:
    """Whether any byte of a body came after the final head of what an answer brought (an
    interim `100 Continue` has none), as sent (a chunk's size line is a byte of it); also when
    no head ended within what was kept (more came than a head) or it cannot be read."""
    head = answer_head(heard)
    return head is None or len(heard) > head.end
