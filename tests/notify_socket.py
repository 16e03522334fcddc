"""A stand-in for systemd's notify socket: bind, point $NOTIFY_SOCKET at it, read with deadlines."""

from __future__ import annotations

import asyncio
import secrets
import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MAX_DATAGRAM = 65536


@dataclass(frozen=True)
class Datagram:
    """One notification as received."""

    raw: bytes
    received_at: float  # time.monotonic(), for cadence checks

    @property
    def lines(self) -> list[str]:
        """The `KEY=value` assignments in the order sent."""
        return self.raw.decode().split("\n")

    @property
    def fields(self) -> dict[str, str]:
        """The assignments as a dict (the last one wins for a repeated key)."""
        return dict(line.split("=", 1) for line in self.lines if "=" in line)


class NotifySocket:
    """An AF_UNIX datagram socket bound like systemd's; `address` goes into $NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.received: list[Datagram] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            bind_to = b"\0" + address[1:].encode() if address.startswith("@") else address
            self._sock.bind(bind_to)
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)

    @classmethod
    def at_path(cls, path: Path) -> NotifySocket:
        """Bind to a filesystem path (keep it short: AF_UNIX paths end at 107 bytes)."""
        return cls(str(path))

    @classmethod
    def abstract(cls) -> NotifySocket:
        """Bind to a fresh name in the abstract namespace ("@..." in $NOTIFY_SOCKET)."""
        return cls(f"@reconciler-test-{secrets.token_hex(8)}")

    def env(self) -> dict[str, str]:
        """The environment entries that make a Notifier (or the daemon) talk to this socket."""
        return {"NOTIFY_SOCKET": self.address}

    def receive(self, timeout_s: float) -> Datagram:
        """Block up to `timeout_s` for the next datagram; raise TimeoutError without one."""
        readable, _, _ = select.select([self._sock], [], [], max(timeout_s, 0.0))
        if not readable:
            raise TimeoutError(self._timeout_text(timeout_s))
        return self._keep(self._sock.recv(MAX_DATAGRAM))

    async def receive_async(self, timeout_s: float) -> Datagram:
        """Like receive(), without blocking the event loop."""
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(self._sock, MAX_DATAGRAM), timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(self._timeout_text(timeout_s)) from None
        return self._keep(data)

    def wait_for(self, key: str, value: str | None = None, *, timeout_s: float) -> list[Datagram]:
        """Receive until a datagram sets `key` (to `value`); return all received meanwhile."""
        deadline = time.monotonic() + timeout_s
        got: list[Datagram] = []
        while True:
            got.append(self.receive(deadline - time.monotonic()))
            if _matches(got[-1], key, value):
                return got

    async def wait_for_async(
        self, key: str, value: str | None = None, *, timeout_s: float
    ) -> list[Datagram]:
        """Like wait_for(), without blocking the event loop."""
        deadline = time.monotonic() + timeout_s
        got: list[Datagram] = []
        while True:
            got.append(await self.receive_async(deadline - time.monotonic()))
            if _matches(got[-1], key, value):
                return got

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _keep(self, data: bytes) -> Datagram:
        datagram = Datagram(data, time.monotonic())
        self.received.append(datagram)
        return datagram

    def _timeout_text(self, timeout_s: float) -> str:
        seen = [d.raw for d in self.received]
        return f"no notification within {timeout_s:.1f}s on {self.address} (so far: {seen})"


def _matches(datagram: Datagram, key: str, value: str | None) -> bool:
    fields = datagram.fields
    return key in fields and (value is None or fields[key] == value)
