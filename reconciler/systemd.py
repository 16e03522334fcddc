"""sd_notify protocol: READY, STATUS, STOPPING and watchdog pings to systemd, no dependency."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("reconciler.systemd")


class Notifier:
    """sd_notify client; a no-op when $NOTIFY_SOCKET is unset."""

    def __init__(
        self,
        socket_path: str | None,
        *,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
    ) -> None:
        # `socket_path` is $NOTIFY_SOCKET as systemd gives it: a path, or "@name" (abstract).
        self._path = socket_path or None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._sock: socket.socket | None = None
        self._closed = False
        self._failing = False
        # READY=1 and STOPPING=1 are said once: when systemd's queue was full (a non-blocking
        # send fails rather than stall the loop), they go again with the next notification,
        # or systemd would wait for READY until its start timeout and kill the service.
        self._owed: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """Build from $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID."""
        return cls(
            environ.get("NOTIFY_SOCKET"),
            watchdog_usec=environ.get("WATCHDOG_USEC"),
            watchdog_pid=environ.get("WATCHDOG_PID"),
        )

    @property
    def enabled(self) -> bool:
        """Whether there is a notify socket to talk to."""
        return self._path is not None

    def notify(self, *states: str) -> bool:
        """Send `KEY=value` states in one datagram; True if sent. Send errors are only logged."""
        for state in states:
            if "\n" in state:
                # A newline would smuggle in another assignment; it is a bug in the caller.
                raise ValueError(f"notify state must be one line: {state!r}")
        if self._path is None or self._closed or not states:
            return False
        states = tuple(dict.fromkeys(self._owed + states))
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto("\n".join(states).encode(), _address(self._path))
        except OSError as exc:
            self._owed = tuple(s for s in states if s in _SAID_ONCE)
            if not self._failing:
                self._failing = True
                log.warning(
                    "systemd.notify_failed",
                    extra={"fields": {"socket": self._path, "error": exc.strerror or str(exc)}},
                )
            return False
        self._owed = ()
        if self._failing:
            self._failing = False
            log.info("systemd.notify_recovered", extra={"fields": {"socket": self._path}})
        return True

    def ready(self, status: str | None = None) -> None:
        """Tell systemd start-up is complete, with an optional status line in the same message."""
        if status is None:
            self.notify("READY=1")
        else:
            self.notify("READY=1", "STATUS=" + _one_line(status))

    def status(self, text: str) -> None:
        """Set the line `systemctl status` shows; newlines become spaces."""
        self.notify("STATUS=" + _one_line(text))

    def stopping(self) -> None:
        """Tell systemd the service is shutting down."""
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """Ping the watchdog once."""
        self.notify("WATCHDOG=1")

    def watchdog_interval_s(self) -> float | None:
        """Return half of $WATCHDOG_USEC in seconds; None when no watchdog is meant for us."""
        try:
            usec = int(self._watchdog_usec or "")
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            # systemd sets WATCHDOG_PID for the main process; a child that inherited the
            # environment must not ping on its behalf.
            try:
                pid = int(self._watchdog_pid)
            except ValueError:
                return None
            if pid != os.getpid():
                return None
        return usec / 2_000_000

    async def run_watchdog(self) -> None:
        """Ping every interval until cancelled; return at once when there is no watchdog."""
        interval_s = self.watchdog_interval_s()
        if interval_s is None or not self.enabled:
            return
        # Pinging from the event loop (not a thread) is the point: a blocked loop stops the
        # pings and systemd restarts the service.
        while True:
            self.watchdog()
            await asyncio.sleep(interval_s)

    def close(self) -> None:
        """Close the socket; later notifications are dropped."""
        self._closed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None


_SAID_ONCE = ("READY=1", "STOPPING=1")


def _address(path: str) -> bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return os.fsencode(path)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())
