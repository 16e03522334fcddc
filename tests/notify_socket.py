"""A stand-in for systemd's notify socket: bind, point $NOTIFY_SOCKET at it, read with deadlines."""

from __future__ import annotations

import asyncio
import queue
import secrets
import select
import socket
import threading
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
    """An AF_UNIX datagram socket bound like systemd's; `address` goes into $NOTIFY_SOCKET.

    A thread reads every datagram as it comes, as systemd does: the kernel queues at most
    net.unix.max_dgram_qlen (10) unread datagrams, and the daemon's non-blocking sender drops
    the next one (a STOPPING=1 behind ten watchdog pings a test had not read yet was lost)."""

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
        self._arrived: queue.Queue[Datagram] = queue.Queue()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closing.is_set():
            readable, _, _ = select.select([self._sock], [], [], 0.05)
            if readable:
                self._arrived.put(Datagram(self._sock.recv(MAX_DATAGRAM), time.monotonic()))

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
        try:
            datagram = self._arrived.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            raise TimeoutError(self._timeout_text(timeout_s)) from None
        self.received.append(datagram)
        return datagram

    async def receive_async(self, timeout_s: float) -> Datagram:
        """Like receive(), without blocking the event loop."""
        return await asyncio.to_thread(self.receive, timeout_s)

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
        """Stop reading and close the socket."""
        self._closing.set()
        self._reader.join()
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

    def _timeout_text(self, timeout_s: float) -> str:
        seen = [d.raw for d in self.received]
        return f"no notification within {timeout_s:.1f}s on {self.address} (so far: {seen})"


def _matches(datagram: Datagram, key: str, value: str | None) -> bool:
    fields = datagram.fields
    return key in fields and (value is None or fields[key] == value)
