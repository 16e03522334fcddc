"""Loopback ports for the daemons and servers the tests start: free a moment ago, never one
given before in this process, and outside the kernel's ephemeral range. In it (32768-60999 by
default) every outgoing connection of every process takes its local port: one made between
the check here and the daemon's bind took the port, the daemon could not listen, and a test
waited for a daemon that never got ready."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

# The lowest port handed out: above the well-known and most registered services' ports.
_LOWEST = 10_000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _this_worker() -> tuple[int, int]:
    """This xdist worker's number and the run's count of workers ((0, 1) without xdist)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return worker, workers


def _share(worker: int, workers: int, ephemeral_start: int) -> range:
    """Worker `worker`'s share of the ports below the ephemeral range (the workers of one
    run never hand out the same port); empty when there is no room below it. A worker that
    replaces a crashed one is numbered on (gw4 of 4 workers): it takes the share of the one it
    replaces, not ports in the ephemeral range."""
    workers = max(workers, 1)
    size = max(ephemeral_start - _LOWEST, 0) // workers
    first = _LOWEST + (worker % workers) * size
    return range(first, first + size)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Ports:
    """Hands out this worker's share in turn, from a random place in it: two runs on one
    machine (developers' worktrees) seldom meet."""

    def __init__(self, share: range) -> None:
        self.share = share
        self.given: set[int] = set()
        self.next = random.Random().randrange(len(share)) if share else 0

    def take(self) -> int:
        for _ in range(len(self.share)):
            port = self.share[self.next % len(self.share)]
            self.next += 1
            if port not in self.given and _bindable(port):
                self.given.add(port)
                return port
        while True:  # no room below the ephemeral range: any port the kernel says is free
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in self.given:
                self.given.add(port)
                return port


_PORTS = _Ports(_share(*_this_worker(), _ephemeral_start()))


def free_port() -> int:
    """Return a loopback port that was free a moment ago, and not one this process was given
    before: two calls for one config (a receiver and an API) got the same port now and then,
    which the config refuses (`api.listen: ... is [receiver] listen's port too`)."""
    return _PORTS.take()
