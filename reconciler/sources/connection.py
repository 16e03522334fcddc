"""The providers' connector, as a write needs it: whether a write is still getting its
connection (nothing of it has left), and the first bytes its answer brought, read again when
aiohttp refuses the answer before it makes a response of it (`answer_head`)."""

from __future__ import annotations

import asyncio
import functools
import re
from contextvars import ContextVar
from typing import Any, NamedTuple

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

# What a write keeps of its answer's first bytes: a head longer than this is read as one that
# did not come whole (`answer_head`). Past writes/once.py's LINE_MAX, so that a head aiohttp
# refused for a line longer than that is read here.
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
    """aiohttp's protocol of a connection, keeping the first bytes it receives while `heard`
    is set (a write's: set for each request that takes the connection)."""

    heard: bytearray | None = None

    def data_received(self, data: bytes) -> None:
        """Keep what a write's answer brought, then parse it as aiohttp does."""
        heard = self.heard
        if heard is not None and len(heard) < HEARD_MAX:
            heard += data[: HEARD_MAX - len(heard)]
        super().data_received(data)


class WriteAwareConnector(aiohttp.TCPConnector):
    """The providers' connector: tells a write still connecting (a handshake that never ends,
    a host that never answers the SYN) from one whose request may have left, so that the first
    is `NotSent` (safe to send again) and not `Uncertain` for ever; and keeps what a write's
    answer brought, whose status line and `Location` aiohttp loses when it refuses the rest of
    the answer in the same read (a broken chunk, a header line too long, a `br` body). Requests
    that are no writes pass straight through."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # aiohttp has no public hook for the protocol its connections get.
        self._factory = functools.partial(_heard_handler, loop=self._loop)

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        """Get the connection, marking the write in this task as connecting meanwhile."""
        connecting = CONNECTING.get()
        if connecting is None:
            conn = await super().connect(req, traces, timeout)
            _hear(conn, None)  # a pooled connection a write used before: no longer kept
            return conn
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
    as aiohttp's `headers.get`; None where it has none)."""

    status: int
    location: str | None
    retry_after: str | None
    content_type: str


# The status line of HTTP/1.x, as aiohttp reads it: three digits, then a reason or nothing.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?:[ \t][^\r\n]*)?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


def answer_head(heard: bytes) -> Head | None:
    """The final head of an answer's first bytes: its status and the headers a write reads;
    None when no status line and headers came whole (no blank line after them, a status line
    that is none). Interim answers (`103 Early Hints`) are passed over."""
    rest = heard
    while True:
        end = _HEAD_END.search(rest)
        if end is None:
            return None
        lines = rest[: end.start()].split(b"\n")
        status_line = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
        if status_line is None:
            return None
        status = int(status_line[1])
        if status >= 200:
            break
        rest = rest[end.end() :]
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.rstrip(b"\r").partition(b":")
        if colon and name and not name[:1].isspace():
            fields.setdefault(name.strip().lower().decode("latin-1"), value.decode("latin-1"))
    location = fields.get("location", "").strip() or None
    retry_after = fields.get("retry-after", "").strip() or None
    return Head(status, location, retry_after, fields.get("content-type", "").strip())
