"""`reconciler sandbox`: serve the simulator until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .. import eventloop
from ..exits import EX_OK, EX_TEMPFAIL, EX_USAGE
from ..sandbox import SandboxOptions, run_sandbox


def split_listen(text: str) -> tuple[str, int]:
    """Split `HOST:PORT` (also `[::1]:PORT`) or raise ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen wants HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def sandbox_command(args: argparse.Namespace) -> int:
    """Run the sandbox in the foreground."""
    try:
        host, port = split_listen(args.listen)
        options = SandboxOptions(
            orders=args.orders,
            seed=args.seed,
            speed=args.speed if args.speed > 0 else 1.0,
            advance=args.speed > 0,
            drop_notifications=args.drop_notifications,
            faults=args.faults,
            ccnow_notification_url=args.ccnow_notification_url,
        )
    except ValueError as exc:
        print(f"reconciler sandbox: error: {exc}", file=sys.stderr)
        return EX_USAGE

    async def serve() -> None:
        stop = asyncio.Event()
        eventloop.stop_once(stop, (signal.SIGTERM, signal.SIGINT))
        await run_sandbox(options, host, port, stop=stop)

    try:
        eventloop.run(serve())
    except OSError as exc:
        print(
            f"reconciler sandbox: cannot listen on {args.listen}: {exc.strerror}", file=sys.stderr
        )
        return EX_TEMPFAIL
    return EX_OK
