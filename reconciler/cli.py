"""Command line: argument parsing and exit codes only; the work is done by the other modules."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, eventloop, strict_json
from .config import Config, ConfigError, load_config, parse_duration
from .eventloop import EventLoopError
from .events import iso_time
from .exit_codes import (
    EX_CONFIG,
    EX_DATAERR,
    EX_IOERR,
    EX_OK,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_USAGE,
)
from .logs import LEVELS, fields, setup_logging
from .model import SOURCES, InvalidOrderId, Source, normalize_order_id
from .order_view import order_json
from .permissions import warn_readable_secrets
from .progress import progress
from .store import Store, StoreError, StoreLocked
from .writes.pricing import blocking, check_pricing

log = logging.getLogger("reconciler.cli")


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit 2)."""


class DataError(Exception):
    """Input data (order ids, files) that is malformed (exit 65)."""


class TempFailure(Exception):
    """Something worth trying again later (exit 75)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    # The same options after the command too (`reconciler catch-up --config x.toml`); there they
    # default to "not given", so they never override a value given before the command.
    common = argparse.ArgumentParser(add_help=False)
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
        type=_duration,
        default=30.0,
        metavar="DURATION",
        help="how long to wait for sinks at the end (default 30s)",
    )

    t = command("track", help="start following orders")
    t.add_argument("source", choices=SOURCES)
    t.add_argument("ids", nargs="*", metavar="ID")
    t.add_argument("--ref", help="external reference of the (single) CCV order")
    t.add_argument(
        "--from-file", type=Path, metavar="PATH", help="one ID or ID,REF per line ('-' for stdin)"
    )
    t.add_argument("--account", help="account name when a source has several")

    u = command("untrack", help="stop following orders")
    u.add_argument("source", choices=SOURCES)
    u.add_argument("ids", nargs="+", metavar="ID")
    u.add_argument("--account")

    o = command("orders", help="show the snapshot")
    o.add_argument("--source", choices=SOURCES)
    o.add_argument("--status")
    o.add_argument("--json", action="store_true")

    e = command("events", help="show the event history")
    e.add_argument("--since", type=_iso, metavar="ISO")
    e.add_argument("--type")
    e.add_argument(
        "--undelivered",
        action="store_true",
        help="only events some sink does not have (pending or dead-lettered)",
    )
    e.add_argument("--json", action="store_true")

    r = command("replay", help="deliver stored events to a sink again, same ids")
    r.add_argument("--sink", required=True)
    r.add_argument("--since", type=_iso, metavar="ISO")
    r.add_argument("--deliver-timeout", type=_duration, default=30.0, metavar="DURATION")

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

    v = command("ccv", help="CCV write calls: submit, check-pricing")
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

    w = command("ccnow", help="CCNow order actions: ship, cancel, add-tracking, adjust, resolve")
    ws = w.add_subparsers(dest="ccnow_command", required=True, metavar="COMMAND")
    for name, what in (
        ("ship", "mark pending orders shipped"),
        ("cancel", "cancel pending orders"),
        ("add-tracking", "upload shipment tracking (--carrier, --number) for pending orders"),
        ("adjust", "give pending orders a discount (--amount USD; refunded once completed)"),
    ):
        a = ws.add_parser(name, parents=[common], help=what)
        a.add_argument("ids", nargs="+", metavar="ID")
        a.add_argument("--notes", metavar="T", help="shown to the consumer (x_notes_N)")
        a.add_argument("--carrier", metavar="C", help="tracking service (x_trackname_N)")
        a.add_argument("--number", metavar="N", help="tracking number (x_tracknumber_N)")
        a.add_argument("--amount", metavar="USD", help="discount in USD (x_amount_N)")
        a.add_argument(
            "--key", metavar="K", help="idempotency key (default: derived from the action)"
        )
        a.add_argument(
            "--dry-run", action="store_true", help="print the form (password masked), send nothing"
        )
        a.add_argument("--account", help="CCNow account name when there are several")
    rs = ws.add_parser("resolve", parents=[common], help="settle an uncertain action by hand")
    rs.add_argument("id", metavar="ID")
    said = rs.add_mutually_exclusive_group(required=True)
    said.add_argument("--sent", action="store_true", help="CCNow has it (seen in the backroom)")
    said.add_argument("--not-sent", action="store_true", help="CCNow does not have it")
    rs.add_argument("--account", help="CCNow account name when there are several")

    s = command("sandbox", help="the built-in simulator of both providers")
    s.add_argument("--listen", default="127.0.0.1:8900", metavar="HOST:PORT")
    s.add_argument("--orders", type=int, default=20)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument(
        "--speed", type=float, default=1.0, help="lifecycle speed; 0 keeps every order where it is"
    )
    s.add_argument("--drop-notifications", type=float, default=0.3, metavar="P")
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
    d.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds")
    d.add_argument(
        "--store", type=Path, metavar="PATH", help="SQLite file (default: a temporary one)"
    )
    d.add_argument("--orders", type=int, default=12)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--speed", type=float, default=1.5)
    d.add_argument("--drop-notifications", type=float, default=0.3, metavar="P")
    return p


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _iso(text: str) -> float:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def config_path(arg: str | None) -> Path:
    """Return the config file to use: --config, $RECONCILER_CONFIG, ./reconciler.toml."""
    return Path(arg or os.environ.get("RECONCILER_CONFIG") or "reconciler.toml")


def undecodable_argument(argv: Sequence[str]) -> str | None:
    """Return the first argument that is not valid UTF-8, shown with escapes, or None."""
    for arg in argv:
        # Python hands over undecodable bytes of argv as lone surrogates (surrogateescape).
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(arg)
            return raw.decode("utf-8", errors="backslashreplace")
    return None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the `reconciler` console script."""
    argv = sys.argv[1:] if argv is None else argv
    bad = undecodable_argument(argv)
    if bad is not None:
        print(f"reconciler: error: argument is not valid UTF-8: {bad}", file=sys.stderr)
        sys.exit(EX_DATAERR)
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    sys.exit(run_command(args))


def run_command(args: argparse.Namespace) -> int:
    """Run one parsed command and map failures to exit codes."""
    try:
        if args.command == "sandbox":
            from .sandbox_cli import sandbox_command

            return sandbox_command(args)
        if args.command == "demo":
            from .demo import demo_command

            return demo_command(args)
        if args.command == "ccv" and args.ccv_command == "check-pricing":
            return cmd_check_pricing(args)
        config = load_config(config_path(args.config))
        handler = _COMMANDS[args.command]
        return eventloop.run(handler(config, args))
    except (ConfigError, EventLoopError) as exc:
        print(str(exc), file=sys.stderr)
        return EX_CONFIG
    except UsageError as exc:
        print(f"reconciler: error: {exc}", file=sys.stderr)
        return EX_USAGE
    except DataError as exc:
        print(f"reconciler: error: {exc}", file=sys.stderr)
        return EX_DATAERR
    except (StoreLocked, TempFailure) as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except StoreError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return EX_IOERR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `reconciler events | head`: the reader left; say nothing more, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK
    except Exception:
        log.critical("unexpected error", exc_info=True)
        return EX_SOFTWARE


# --- commands ---------------------------------------------------------------------------------

MAX_JSON_INPUT_BYTES = 16 * 1024 * 1024


def _read_json(name: str) -> object:
    """Read one JSON document from a file or stdin ('-'); malformed input is a DataError."""
    try:
        if name == "-":
            raw = sys.stdin.buffer.read(MAX_JSON_INPUT_BYTES + 1)
        else:
            with open(name, "rb") as f:
                raw = f.read(MAX_JSON_INPUT_BYTES + 1)
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(raw) > MAX_JSON_INPUT_BYTES:
        raise DataError(f"{name}: larger than {MAX_JSON_INPUT_BYTES} bytes")
    try:
        return strict_json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{name}: not JSON: {exc}") from None


def cmd_check_pricing(args: argparse.Namespace) -> int:
    """Check CCV prices: every problem on its own line (stdout), exit 65 if any blocks."""
    problems = check_pricing(_read_json(args.file))
    if args.json:
        report = {"ok": not blocking(problems), "problems": [p.to_json() for p in problems]}
        print(json.dumps(report))
    else:
        for problem in problems:
            print(problem.line())
    return EX_DATAERR if blocking(problems) else EX_OK


async def cmd_ccv(config: Config, args: argparse.Namespace) -> int:
    """`ccv submit`: submit an order through reconciler."""
    from .writes.submit_cli import submit_command

    document = _read_json(args.file)
    return await submit_command(config, _account(config, "ccv", args.account), document)


async def cmd_ccnow(config: Config, args: argparse.Namespace) -> int:
    """`ccnow ship|cancel|add-tracking|adjust|resolve`: CCNow order actions."""
    from .writes.ccnow_cli import action_command, resolve_command

    name = _account(config, "ccnow", args.account)
    cfg = next(c for c in config.ccnow if c.name == name)
    if args.ccnow_command == "resolve":
        return await resolve_command(config, cfg, args.id, sent=args.sent)
    return await action_command(
        config,
        cfg,
        args.ccnow_command,
        args.ids,
        notes=args.notes,
        carrier=args.carrier,
        number=args.number,
        amount=args.amount,
        key=args.key,
        dry_run=args.dry_run,
    )


def _account(config: Config, source: Source, name: str | None) -> str:
    accounts = [a.name for a in (config.ccv if source == "ccv" else config.ccnow)]
    if not accounts:
        raise UsageError(f"no [{source}] account is configured")
    if name is None:
        if len(accounts) > 1:
            raise UsageError(f"several {source} accounts ({', '.join(accounts)}): give --account")
        return accounts[0]
    if name not in accounts:
        raise UsageError(f"no {source} account named {name!r} ({', '.join(accounts)})")
    return name


async def _open_store(config: Config, *, readonly: bool = False) -> Store | None:
    try:
        return await Store.open(config.store_path, readonly=readonly)
    except FileNotFoundError:
        return None


async def cmd_run(config: Config, args: argparse.Namespace) -> int:
    """The daemon."""
    from .daemon import StartupError, run_daemon

    warn_readable_secrets(config.secret_files)
    try:
        return await run_daemon(config)
    except StartupError as exc:
        raise TempFailure(str(exc)) from None


async def cmd_catch_up(config: Config, args: argparse.Namespace) -> int:
    """One full pass, then deliver."""
    from .runtime import Runtime

    async with Runtime(config) as rt:
        started = time.monotonic()
        due = await rt.store.count_due(math.inf)  # every open order: what a catch-up asks
        total = sum(n for (source, _), n in due.items() if args.source in (None, source))
        with progress("catch-up", total) as advance:
            rt.reconciler.on_checked = advance
            outbox_task = asyncio.ensure_future(rt.outbox.run())
            try:
                report = await rt.reconciler.catch_up(args.source)
            finally:
                rt.outbox.stop()
                await outbox_task
        await rt.outbox.drain(args.deliver_timeout)
        await rt.prune()  # also lets go of the rows of sinks no longer configured
        undelivered = await rt.store.undelivered_count()
        delivered = not any(undelivered.values())
        level = logging.INFO if report.ok and delivered else logging.WARNING
        log.log(
            level,
            "catch-up.done",
            extra=fields(
                checked=report.checked,
                failed=report.failed,
                events=report.events,
                failing_sources=sorted(report.failed_sources),
                undelivered={k: v for k, v in undelivered.items() if v},
                seconds=round(time.monotonic() - started, 3),
            ),
        )
    return EX_OK if report.ok and delivered else EX_TEMPFAIL


def _read_track_file(path: Path, source: Source) -> list[tuple[str, str | None]]:
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM, which is not part of the first id.
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        number = exc.object.count(b"\n", 0, exc.start) + 1
        raise DataError(f'{path}:{number}: not UTF-8 (save it as "CSV UTF-8")') from None
    out: list[tuple[str, str | None]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        raw, _, ref = line.partition(",")
        try:
            oid = normalize_order_id(source, raw.strip())
        except InvalidOrderId as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
        ref = ref.strip()
        if ref and source != "ccv":
            raise DataError(f"{path}:{number}: external references are for CCV orders")
        if ref and (problem := reference_problem(ref)):
            raise DataError(f"{path}:{number}: {problem}")
        out.append((oid, ref or None))
    return out


def reference_problem(ref: str) -> str | None:
    """Why an external reference cannot be followed or put into a notification URL, or None."""
    if not ref:
        # The receiver refuses an empty path segment: the URL would never be accepted.
        return "an external reference must not be empty"
    if not ref.isprintable():
        return f"an external reference must not hold control or invisible characters: {ref!r}"
    return None


async def cmd_track(config: Config, args: argparse.Namespace) -> int:
    """Start following orders."""
    source: Source = args.source
    account = _account(config, source, args.account)
    if args.ref is not None and (source != "ccv" or len(args.ids) != 1 or args.from_file):
        raise UsageError("--ref takes exactly one CCV order id")
    if not args.ids and args.from_file is None:
        raise UsageError("give order ids or --from-file")
    if args.ref is not None and (problem := reference_problem(args.ref)):
        raise DataError(f"--ref: {problem}")
    orders: list[tuple[str, str | None]] = []
    for raw in args.ids:
        try:
            orders.append((normalize_order_id(source, raw), args.ref))
        except InvalidOrderId as exc:
            raise DataError(str(exc)) from None
    if args.from_file is not None:
        orders.extend(_read_track_file(args.from_file, source))
    store = await Store.open(config.store_path)
    try:
        with progress("track", len(orders)) as advance:
            added = await store.track(source, account, orders, time.time(), progress=advance)
        await _resolve_submissions(store, account, orders)
    finally:
        await store.close()
    log.info(
        "orders.tracked",
        extra=fields(source=source, account=account, given=len(orders), new_or_updated=added),
    )
    return EX_OK


async def _resolve_submissions(
    store: Store, account: str, orders: Sequence[tuple[str, str | None]]
) -> None:
    """An order tracked with its reference settles an uncertain CCV submit of that reference."""
    from . import store_submissions

    pairs = [(order_id, ref) for order_id, ref in orders if ref is not None]
    if await store_submissions.resolve_many(store, account, pairs, time.time()):
        log.info("ccv.submit_resolved", extra=fields(account=account, given=len(pairs)))


async def cmd_untrack(config: Config, args: argparse.Namespace) -> int:
    """Stop following orders."""
    source: Source = args.source
    account = _account(config, source, args.account) if args.account else None
    try:
        ids = [normalize_order_id(source, raw) for raw in args.ids]
    except InvalidOrderId as exc:
        raise DataError(str(exc)) from None
    store = await _open_store(config)
    if store is None:
        return EX_OK
    try:
        removed = await store.untrack(source, account, ids)
    finally:
        await store.close()
    log.info("orders.untracked", extra=fields(source=source, removed=removed))
    return EX_OK


async def cmd_orders(config: Config, args: argparse.Namespace) -> int:
    """Print the snapshot."""
    store = await _open_store(config, readonly=True)
    states = []
    if store is not None:
        try:
            states = await store.list_orders(args.source, args.status)
        finally:
            await store.close()
    rows = [order_json(s) for s in states]
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return EX_OK
    cols = ("source", "account", "order_id", "status", "external_reference", "last_changed")
    _print_table(rows, cols)
    return EX_OK


def _print_table(rows: list[dict[str, Any]], cols: Sequence[str]) -> None:
    table = [[str(c).upper() for c in cols]] + [
        ["-" if r[c] is None else str(r[c]) for c in cols] for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip())


async def cmd_events(config: Config, args: argparse.Namespace) -> int:
    """Print the event history."""
    store = await _open_store(config, readonly=True)
    events = []
    if store is not None:
        try:
            events = await store.list_events(
                since=args.since, type=args.type, undelivered=args.undelivered
            )
        finally:
            await store.close()
    if args.json:
        out = []
        for e in events:
            obj = json.loads(e.body)
            if args.undelivered:
                obj["undelivered"] = list(e.undelivered)
            out.append(obj)
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return EX_OK
    rows = []
    for e in events:
        data = json.loads(e.body).get("data", {})
        change = data.get("status") or "-"
        if data.get("previous_status"):
            change = f"{data['previous_status']} -> {change}"
        rows.append(
            {
                "time": iso_time(e.time),
                "type": e.type,
                "order": f"{data.get('source')}/{e.order_id}" if e.order_id else data.get("source"),
                "change": change if e.order_id else (data.get("reason") or "-"),
                "severity": e.severity,
                "undelivered": ",".join(e.undelivered) or None,
            }
        )
    _print_table(rows, ("time", "type", "order", "change", "severity", "undelivered"))
    return EX_OK


async def cmd_replay(config: Config, args: argparse.Namespace) -> int:
    """Queue stored events for a sink again and deliver them (unless a daemon will)."""
    from .runtime import Runtime

    names = ["log", *(s.name for s in config.sinks)]
    if args.sink not in names:
        raise UsageError(f"no sink named {args.sink!r} ({', '.join(dict.fromkeys(names))})")
    try:
        async with Runtime(config) as rt:
            count = await rt.store.requeue(args.sink, args.since)
            log.info("replay.queued", extra=fields(sink=args.sink, events=count))
            with progress(f"replay {args.sink}", count, unit="events") as advance:

                def replayed(sink: str, n: int) -> None:
                    if sink == args.sink:
                        advance(n)

                rt.outbox.on_delivered = replayed
                delivered = await rt.outbox.drain(args.deliver_timeout)
    except StoreLocked:
        # A running daemon owns delivery: queue the events and let it send them.
        store = await Store.open(config.store_path)
        try:
            count = await store.requeue(args.sink, args.since)
        finally:
            await store.close()
        log.info(
            "replay.queued",
            extra=fields(sink=args.sink, events=count, delivered_by="running daemon"),
        )
        return EX_OK
    return EX_OK if delivered else EX_TEMPFAIL


async def cmd_check(config: Config, args: argparse.Namespace) -> int:
    """Config is valid when we get here; with --online, ask each provider once."""
    accounts = [f"ccv/{c.name}" for c in config.ccv] + [f"ccnow/{c.name}" for c in config.ccnow]
    print(f"config ok: {config.file} (accounts: {', '.join(accounts)}; store: {config.store_path})")
    warn_readable_secrets(config.secret_files)
    if not args.online:
        return EX_OK
    from .online import check_online

    return await check_online(config)


async def cmd_notification_url(config: Config, args: argparse.Namespace) -> int:
    """Print the signed notification URL for a CCV order or external reference."""
    from .notify import notification_url

    if config.receiver is None:
        raise UsageError("notification URLs need a [receiver] section with public_url and secret")
    account = _account(config, "ccv", args.account)
    if args.order is not None:
        try:
            value = normalize_order_id("ccv", args.order)
        except InvalidOrderId as exc:
            raise DataError(str(exc)) from None
        print(notification_url(config.receiver, account, order_id=value))
    else:
        if problem := reference_problem(args.ref):
            raise DataError(f"--ref: {problem}")
        print(notification_url(config.receiver, account, reference=args.ref))
    return EX_OK


async def cmd_status(config: Config, args: argparse.Namespace) -> int:
    """Health of accounts, sinks and the store (see status.py)."""
    from .commands.status import status_command

    return await status_command(config, args)


_COMMANDS = {
    "run": cmd_run,
    "catch-up": cmd_catch_up,
    "track": cmd_track,
    "untrack": cmd_untrack,
    "orders": cmd_orders,
    "events": cmd_events,
    "replay": cmd_replay,
    "status": cmd_status,
    "check": cmd_check,
    "notification-url": cmd_notification_url,
    "ccv": cmd_ccv,
    "ccnow": cmd_ccnow,
}
