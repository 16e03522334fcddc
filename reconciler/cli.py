"""Command line: argument parsing and exit codes only; the work is done by the other modules."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO

from . import __version__, eventloop
from .commands import OWN_SIGNALS, WITHOUT_SECRETS, argtypes
from .config import Config, ConfigError, load_config
from .config.where import config_path
from .eventloop import EventLoopError
from .exits import (
    CCNOW_ACTION_EXITS,
    EX_CONFIG,
    EX_DATAERR,
    EX_INTERRUPTED,
    EX_IOERR,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_TERMINATED,
    EX_USAGE,
    DataError,
    OutputError,
    TempFailure,
    Terminated,
    UsageError,
)
from .logs import LEVELS, logging_set_up, mask_secrets, say
from .model import SOURCES, EventType
from .redact import config_secrets
from .stdio import open_closed_standard_streams, output_written, report_failed_output
from .store import StoreError, StoreFull, StoreLocked, named_unusable

if TYPE_CHECKING:
    from .daemon import Ticks

log = logging.getLogger("reconciler.cli")

SPEED_HELP = "lifecycle speed; 0 keeps every order where it is"  # the sandbox's and the demo's


def _parser() -> argparse.ArgumentParser:
    p = argtypes.Parser(
        prog="reconciler",
        description="Keep the state of CCV and CCNow orders true: poll, diff, emit events.",
    )
    p.add_argument("--version", action="version", version=f"reconciler {__version__}")
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $RECONCILER_CONFIG, else ./reconciler.toml)",
    )
    p.add_argument("--log-level", choices=LEVELS, default="info", help="default: info")
    # Also after the command (`catch-up --config x.toml`); not given there, they override nothing.
    common = argtypes.Parser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    common.add_argument(
        "--log-level", choices=LEVELS, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    command("run", help="the daemon: scheduler, receiver, sinks")

    c = command("catch-up", help="check every open order once, deliver, exit")
    c.add_argument("--source", choices=SOURCES)
    c.add_argument(
        "--deliver-timeout",
        type=argtypes.duration,
        default=30.0,
        metavar="DURATION",
        help="how long to wait for sinks at the end (default 30s)",
    )

    t = command("track", help="start following orders")
    t.add_argument("source", choices=SOURCES)
    t.add_argument("ids", nargs="*", metavar="ID")
    t.add_argument("--ref", help="external reference of the (single) CCV order")
    t.add_argument(
        "--relink",
        action="store_true",
        help="move a CCV order followed under another reference to the one given",
    )
    t.add_argument(
        "--from-file", type=Path, metavar="PATH", help="one ID or ID,REF per line ('-' for stdin)"
    )
    t.add_argument("--account", help="account name when a source has several")

    u = command("untrack", help="stop following orders")
    u.add_argument("source", choices=SOURCES)
    u.add_argument("ids", nargs="*", metavar="ID")  # at least one: argtypes.with_ids
    u.add_argument("--account")

    o = command("orders", help="show the snapshot")
    o.add_argument("--source", choices=SOURCES)
    o.add_argument("--status")
    o.add_argument("--json", action="store_true")

    e = command("events", help="show the event history")
    e.add_argument("--since", type=argtypes.iso, metavar="ISO")
    e.add_argument("--type", choices=[t.value for t in EventType], metavar="TYPE")
    e.add_argument(
        "--undelivered",
        action="store_true",
        help="only events some sink does not have (pending or dead-lettered)",
    )
    e.add_argument("--json", action="store_true")

    r = command("replay", help="deliver stored events to a sink again, same ids")
    r.add_argument("--sink", required=True)
    r.add_argument("--since", type=argtypes.iso, metavar="ISO")
    r.add_argument("--undelivered", action="store_true", help="only what the sink does not have")
    r.add_argument("--deliver-timeout", type=argtypes.duration, default=30.0, metavar="DURATION")

    st = command("status", help="health of accounts, sinks and the store; orders by status")
    st.add_argument("--json", action="store_true")

    k = command("check", help="validate the config (and credentials with --online)")
    k.add_argument("--online", action="store_true")

    n = command("notification-url", help="print the URL for a CCV order's notificationUrl")
    n.add_argument("source", choices=["ccv"])
    g = n.add_mutually_exclusive_group(required=True)
    g.add_argument("--order", metavar="ID")
    g.add_argument("--ref", metavar="REF")
    n.add_argument("--account")

    v = command("ccv", help="CCV write calls: submit, check-pricing, resolve")
    vs = v.add_subparsers(dest="ccv_command", required=True, metavar="COMMAND")
    cp = vs.add_parser(
        "check-pricing",
        parents=[common],
        help="check a SetShoppingCardPricingDetails body before it is sent (no config needed)",
    )
    cp.add_argument("file", metavar="FILE", help="the JSON body ('-' for stdin)")
    cp.add_argument("--json", action="store_true", help="one JSON object with every problem")
    cs = vs.add_parser(
        "submit",
        parents=[common],
        help="submit an order through reconciler (notification URL set, tracked); prints its id",
    )
    cs.add_argument("file", metavar="FILE", help="CCV's submit-order JSON body ('-' for stdin)")
    cs.add_argument("--account", help="CCV account name when there are several")
    cr = vs.add_parser(
        "resolve",
        parents=[common],
        help="close an uncertain submit that CCV never got (--not-sent), or made (--made)",
    )
    cr.add_argument("--ref", required=True, metavar="REF", help="its external reference")
    word = cr.add_mutually_exclusive_group(required=True)
    word.add_argument(
        "--not-sent",
        action="store_true",
        help="CCV has no order of the reference (it may then be submitted again)",
    )
    word.add_argument("--made", action="store_true", help="CCV made its order (not followed)")
    cr.add_argument("--account", help="CCV account name when there are several")

    w = command("ccnow", help="CCNow order actions: ship, cancel, add-tracking, adjust, resolve")
    ws = w.add_subparsers(dest="ccnow_command", required=True, metavar="COMMAND")
    for name, what in (
        ("ship", "mark pending orders shipped"),
        ("cancel", "cancel pending orders"),
        ("add-tracking", "upload shipment tracking (--carrier, --number) for pending orders"),
        ("adjust", "give pending orders a discount (--amount USD; refunded once completed)"),
    ):
        a = ws.add_parser(name, parents=[common], help=what, epilog=CCNOW_ACTION_EXITS)
        a.add_argument("ids", nargs="*", metavar="ID")
        a.add_argument("--notes", metavar="T", help="shown to the consumer (x_notes_N)")
        a.add_argument("--carrier", metavar="C", help="tracking service (x_trackname_N)")
        a.add_argument("--number", metavar="N", help="tracking number (x_tracknumber_N)")
        a.add_argument("--amount", metavar="USD", help="discount in USD (x_amount_N)")
        a.add_argument("--key", metavar="K", help="idempotency key (default: from the action)")
        a.add_argument(
            "--dry-run", action="store_true", help="print the form (password masked), send nothing"
        )
        a.add_argument("--account", help="CCNow account name when there are several")
    rs = ws.add_parser(
        "resolve",
        parents=[common],
        help="settle an uncertain action by hand; withdraw a queued one (--not-sent --action A)",
    )
    rs.add_argument("id", nargs="?", metavar="ID")
    said = rs.add_mutually_exclusive_group(required=True)
    said.add_argument("--sent", action="store_true", help="CCNow has it (seen in the backroom)")
    said.add_argument(
        "--not-sent",
        action="store_true",
        help="CCNow does not have it; with --action and none of it uncertain: withdraw it queued",
    )
    rs.add_argument("--account", help="CCNow account name when there are several")
    words = ("ship", "cancel", "add-tracking", "adjust", "track")  # twin: RESOLVE_ACTIONS (writes)
    rs.add_argument(
        "--action", choices=words, help="settle (or withdraw) only this action's commands"
    )

    s = command("sandbox", help="the built-in simulator of both providers")
    s.add_argument("--listen", default="127.0.0.1:8900", metavar="HOST:PORT")
    s.add_argument("--orders", type=argtypes.order_count, default=20)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--speed", type=argtypes.speed, default=1.0, help=SPEED_HELP)
    s.add_argument("--drop-notifications", type=argtypes.share, default=0.3, metavar="P")
    s.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="comma-separated KIND[:ccv|:ccnow][=VALUE], VALUE a share of requests from 0 to 1:"
        " maintenance (no value), slow=SECONDS, http500, html (a 200 HTML page);"
        " CCV only: http400, http403, http429 (with Retry-After), html404 (a gateway's HTML 404),"
        " submit_timeout (a submit makes its order, then never answers);"
        " CCNow answer shapes: crlf, cr (bare CR line ends), partial (cut mid-line, connection"
        " closed), duplicate (every line twice), unknown_message (message account_locked),"
        " drop (close the connection unanswered after applying a post's actions)."
        " E.g. http500:ccv=0.3,http429=0.1,crlf=1,slow=2",
    )
    s.add_argument(
        "--ccnow-notification-url",
        metavar="URL",
        help="POST a CCNow order alert (x_orderid_1, x_status_1) here on every CCNow status change",
    )

    d = command("demo", help="the sandbox and the daemon together, with a live feed")
    d.add_argument("--seconds", type=argtypes.positive, metavar="N", help="stop after N seconds")
    d.add_argument(
        "--store",
        type=Path,
        metavar="PATH",
        help="its SQLite file, started afresh and kept (default: the default store path, "
        "$STATE_DIRECTORY/reconciler.db, else ./reconciler.db)",
    )
    d.add_argument("--orders", type=argtypes.order_count, default=12)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--speed", type=argtypes.speed, default=1.5, help=SPEED_HELP)
    d.add_argument("--drop-notifications", type=argtypes.share, default=0.3, metavar="P")
    return p


def undecodable_argument(argv: Sequence[str]) -> str | None:
    """Return the first argument that is not valid UTF-8, shown with escapes, or None."""
    for arg in argv:
        # Python hands over undecodable bytes of argv as lone surrogates (surrogateescape).
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(arg).decode("utf-8", errors="backslashreplace")
    return None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the `reconciler` console script."""
    open_closed_standard_streams()
    report_failed_output()
    code = run(sys.argv[1:] if argv is None else argv)
    if code == EX_TERMINATED:  # ended as SIGTERM ends a process: so its supervisor reads it
        eventloop.end_by_sigterm()
    eventloop.keep_stop_handled()
    sys.exit(code)


def run(argv: Sequence[str], *, log_stream: TextIO | None = None) -> int:
    """Run one command line and return its exit code: all the console script does but exit.
    Log lines go to `log_stream` (default stderr); logging is put back as it was at the end."""
    return output_written(lambda: _run(argv, log_stream), failed=exit_code)


def _run(argv: Sequence[str], log_stream: TextIO | None) -> int:
    bad = undecodable_argument(argv)
    if bad is not None:
        say(f"reconciler: error: argument is not valid UTF-8: {bad}")
        return EX_DATAERR
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EX_USAGE
    with logging_set_up(args.log_level, log_stream):
        return run_command(args)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a command line; argparse exits 2 on a usage error."""
    return argtypes.with_ids(_parser(), argv)


def run_command(args: argparse.Namespace) -> int:
    """Run one parsed command and map failures to exit codes."""
    try:
        command = without_config(args)
        if command is not None:
            return command(args)
        config_path(args.config)  # an empty one: refused before the loop is chosen
        return eventloop.run(config_command(args), sigterm_cancels=args.command not in OWN_SIGNALS)
    except EventLoopError as exc:
        # README's one line: the file the command reads (`-`: none), the variable, the problem.
        file = "-" if without_config(args) else str(config_path(args.config))
        return exit_code(ConfigError(file, eventloop.ENV, exc.problem))
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except (BrokenPipeError, OutputError):
        raise  # for `output_written`: the reader left, or the output cannot be written
    except Exception as exc:
        return exit_code(exc)


def without_config(args: argparse.Namespace) -> Callable[[argparse.Namespace], int] | None:
    """Return the function of a command that needs no config (it runs its own loop, if it
    needs one), or None."""
    if args.command == "sandbox":
        from .commands.sandbox import sandbox_command

        return sandbox_command
    if args.command == "demo":
        from .commands.demo import demo_command

        return demo_command
    if args.command == "ccv" and args.ccv_command == "check-pricing":
        from .commands.ccv import check_pricing_command

        return check_pricing_command
    return None


async def config_command(
    args: argparse.Namespace, *, stop: asyncio.Event | None = None, ticks: Ticks | None = None
) -> int:
    """Load the config and run a command needing it, in the running loop. `stop` ends `run` in
    place of its signals (a daemon in another program's loop); `ticks`: a test daemon's."""
    config = load_config(config_path(args.config), secrets_optional=args.command in WITHOUT_SECRETS)
    mask_secrets(config_secrets(config))  # in every traceback logged from here on
    with named_unusable(config.store_path):  # a store error outside the store's guards: one line
        if args.command == "run":
            from .commands.run import daemon_command

            return await daemon_command(config, args, stop=stop, ticks=ticks)
        return await _command(args.command)(config, args)


# Expected failures: one line on stderr (the prefix, then the error) and their exit code.
_FAILURES: tuple[tuple[type[Exception] | tuple[type[Exception], ...], str, int], ...] = (
    (ConfigError, "", EX_CONFIG),
    (UsageError, "reconciler: error: ", EX_USAGE),
    (DataError, "reconciler: error: ", EX_DATAERR),
    ((StoreLocked, StoreFull, TempFailure), "reconciler: ", EX_TEMPFAIL),  # space may be freed
    ((StoreError, OutputError), "reconciler: ", EX_IOERR),
    (Terminated, "reconciler: ", EX_TERMINATED),
)


def exit_code(exc: Exception, stderr: TextIO | None = None) -> int:
    """Say why a command failed on `stderr` (default sys.stderr; an unexpected error is logged
    with its traceback) and return its exit code."""
    stream = stderr or sys.stderr
    for kinds, prefix, code in _FAILURES:
        if isinstance(exc, kinds):
            say(f"{prefix}{exc}", stream=stream)  # an error line under journald too
            return code
    log.critical("unexpected error", exc_info=exc)
    return EX_SOFTWARE


_ConfigCommand = Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]

# Where the body of each command that needs the config lives (module of reconciler.commands,
# function). It is imported only when its command runs, so a process loads what its command
# uses and no more (a catch-up starts without the status report, the sandbox, the API server).
_COMMANDS: Final[Mapping[str, tuple[str, str]]] = {
    "catch-up": ("catch_up", "catch_up_command"),
    "track": ("orders", "track_command"),
    "untrack": ("orders", "untrack_command"),
    "orders": ("orders", "orders_command"),
    "events": ("events", "events_command"),
    "replay": ("replay", "replay_command"),
    "status": ("status", "status_command"),
    "check": ("check", "check_command"),
    "notification-url": ("ccv", "notification_url_command"),
    "ccv": ("ccv", "ccv_command"),  # `ccv check-pricing` needs no config: run before loading it
    "ccnow": ("ccnow", "ccnow_command"),
}


def _command(name: str) -> _ConfigCommand:
    """Import the module of a command that needs the config and return its function."""
    module, function = _COMMANDS[name]
    body: _ConfigCommand = getattr(
        importlib.import_module(f"{__package__}.commands.{module}"), function
    )
    return body
