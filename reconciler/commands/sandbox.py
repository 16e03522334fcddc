"""`reconciler sandbox`: serve the simulator until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .. import eventloop
from ..config.values import parse_listen
from ..exits import EX_OK, EX_TEMPFAIL, EX_USAGE
from ..sandbox import SandboxOptions, run_sandbox


def split_listen(text: str) -> tuple[str, int]:
    """Split `HOST:PORT` (also `[::1]:PORT`) as the config's `listen` is read, port 0 allowed
    (the system picks a free one) and no host meaning 127.0.0.1; or raise ValueError."""
    try:
        listen = parse_listen(f"127.0.0.1{text}" if text[:1] == ":" else text, free_port=True)
    except ValueError as exc:
        raise ValueError(f"--listen: {exc}") from None
    if listen is None:
        raise ValueError(
            "--listen wants HOST:PORT like 127.0.0.1:8900 or [::1]:8900 (port 0 to 65535), "
            f"got {text!r}"
        )
    return listen


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
