"""`reconciler demo`: the sandbox and the daemon together, with a live feed and a summary.

Everything runs in this process on loopback: the sandbox plays CCV and CCNow (and drops a share
of CCV's notifications, as a real one-shot notification may be lost), the daemon follows the
sandbox's orders, and every event it emits is printed as it happens.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
import typing
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, TextIO

from .. import eventloop
from ..config import (
    AlertsConfig,
    ApiConfig,
    CCNowConfig,
    CCVConfig,
    Config,
    ReceiverConfig,
    RetryConfig,
    ScheduleConfig,
    Secret,
    default_store_path,
)
from ..config.where import NoCurrentDirectory, current_directory
from ..daemon import Daemon
from ..events import Event
from ..exits import TempFailure, UsageError
from ..model import Via
from ..notify import notification_url
from ..runtime import Runtime
from ..sandbox import Sandbox, SandboxOptions
from ..store import WriterLock
from ..store.errors import file_error
from ..store.files import made_by_a_demo, remove_store_files
from ..systemd import Notifier
from ..writes.ccnow_actions import build
from .demo_submit import SUBMIT_EVERY_S, SUBMITS, DemoIntegrator, submit_delays

DEMO_SHIP_EVERY_S = 1.0
DEMO_SHIPMENTS = 3
_COLOURS: Final[Mapping[str, str]] = {
    "info": "\033[32m",
    "warning": "\033[33m",
    "error": "\033[31m",
}
_DIM, _RESET = "\033[2m", "\033[0m"


def ccnow_alert_url(config: Config) -> str:
    """Return the receiver's URL for the demo CCNow account's server notifications."""
    assert config.receiver is not None and config.ccnow[0].notification_token is not None
    token = config.ccnow[0].notification_token.reveal()
    return f"{config.receiver.public_url}/notify/ccnow/{config.ccnow[0].name}/{token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_config(sandbox_url: str, store: Path, receiver_port: int, api_port: int) -> Config:
    """Return the daemon's config for the sandbox: short intervals so that a minute shows a lot;
    the integration API on loopback, with a token made up for this run."""
    retry = RetryConfig(attempts=2, backoff_s=0.2, max_backoff_s=2.0)
    return Config(
        file="<demo>",
        store_path=store,
        ccv=(
            CCVConfig(
                name="default",
                base_url=sandbox_url,
                api_key=Secret(SandboxOptions.ccv_api_key),
                poll_interval_s=10,
                concurrency=4,
                timeout_s=5,
                retry=retry,
                # Polling is the safety net: slow enough that notifications visibly win, fast
                # enough that a dropped one is caught within the demo.
                schedule=ScheduleConfig(min_interval_s=4, max_interval_s=8),
            ),
        ),
        ccnow=(
            CCNowConfig(
                name="default",
                url=f"{sandbox_url}/cgi-local/oapi_receive.cgi",
                client_id=SandboxOptions.ccnow_client_id,
                password=Secret(SandboxOptions.ccnow_password),
                store_id="",
                poll_interval_s=3,
                batch_size=25,
                concurrency=2,
                timeout_s=5,
                retry=retry,
                schedule=ScheduleConfig(min_interval_s=3, max_interval_s=10, settled_interval_s=10),
                notification_token=Secret(os.urandom(16).hex()),
            ),
        ),
        receiver=ReceiverConfig(
            listen_host="127.0.0.1",
            listen_port=receiver_port,
            public_url=f"http://127.0.0.1:{receiver_port}",
            secret=Secret(os.urandom(16).hex()),
        ),
        sinks=(),
        alerts=AlertsConfig(),
        api=ApiConfig(
            listen_host="127.0.0.1", listen_port=api_port, token=Secret(os.urandom(16).hex())
        ),
    )


class Feed:
    """Prints one readable line per event (coloured on a terminal) and counts them."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.colour = out.isatty() and not os.environ.get("NO_COLOR")
        self.events: list[Event] = []

    def __call__(self, events: Sequence[Event]) -> None:
        for event in events:
            self.events.append(event)
            self.out.write(self.line(event) + "\n")
        self.out.flush()

    def line(self, event: Event) -> str:
        """Render one event."""
        d = event.data
        when = event.cloudevent()["time"][11:19]
        if event.order_id is None:
            what = f"{d['source']}/{d['account']}: {d.get('reason') or ''}"
        elif "action" in d:
            what = f"{event.source:<5} {event.order_id[:13]:<13} {d['action']}: {d['answer']}"
        else:
            change = d["status"] or "gone"
            if d["previous_status"] and d["status"]:
                change = f"{d['previous_status']} -> {d['status']}"
            what = f"{event.source:<5} {event.order_id[:13]:<13} {change}"
        text = f"{when}  {event.type.value:<21} {what}  (via {d.get('via')})"
        if self.colour:
            return f"{_COLOURS.get(event.severity, '')}{text}{_RESET}"
        return text


async def run_demo(
    args: argparse.Namespace,
    out: TextIO,
    stop: asyncio.Event,
    *,
    submit_every_s: float = SUBMIT_EVERY_S,
) -> int:
    """Run sandbox + daemon until --seconds passed or `stop` is set; print the summary.
    `submit_every_s`: how far apart the integrator's submits go at most (a test that waits for
    all of them takes them closer)."""
    store = demo_store(args.store)
    sandbox = Sandbox(
        SandboxOptions(
            orders=args.orders,
            seed=args.seed,
            # As `sandbox --speed 0`: the options want a rate, 0 means no lifecycle at all.
            speed=args.speed if args.speed > 0 else 1.0,
            advance=args.speed > 0,
            drop_notifications=args.drop_notifications,
        )
    )
    url = await sandbox.start("127.0.0.1", 0)
    try:
        held = hold_for_shipment(sandbox)
        config = demo_config(url, store, _free_port(), _free_port())
        assert config.receiver is not None and config.api is not None
        # Like CCV's, CCNow's alerts make the daemon poll at once; polling still catches all.
        sandbox.set_ccnow_notification(ccnow_alert_url(config))
        out.write(
            f"sandbox on {url}: {args.orders} CCV and {args.orders} CCNow orders; "
            f"{args.drop_notifications:.0%} of CCV notifications are dropped, "
            "CCNow posts an order alert on every change.\n"
            f"{SUBMITS} more CCV orders are submitted through the integration API on "
            f"127.0.0.1:{config.api.listen_port}, as an application would: each is tracked "
            "at once, and CCV notifies reconciler of its changes.\n"
            f"store: {store} (kept after the demo: `reconciler orders`, `events`, `status` "
            "read it with a config whose [store] path names it)\n\n"
        )
        feed = Feed(out)
        async with Runtime(config) as rt:
            await rt.store.mark_demo()
            ids = sandbox.ccv_order_ids()
            for oid in ids:
                sandbox.set_notification(
                    oid, notification_url(config.receiver, "default", order_id=oid)
                )
            now = time.time()
            await rt.store.orders.track("ccv", "default", [(oid, None) for oid in ids], now)
            await rt.store.orders.track(
                "ccnow", "default", [(oid, None) for oid in sandbox.ccnow_order_ids()], now
            )
            rt.reconciler.on_events = feed
            daemon = Daemon(config, rt, Notifier(None))
            # The daemon stops after the integrator's last submit, not with `stop`: its API
            # answers a submit under way, and the summary counts every order submitted.
            halt, stopping = asyncio.Event(), asyncio.Event()
            serving = asyncio.ensure_future(daemon.serve(halt))
            shipping = asyncio.ensure_future(ship_some(sandbox, rt, config, first=held))
            integrator = DemoIntegrator(
                f"http://127.0.0.1:{config.api.listen_port}", config.api.token.reveal(), out
            )
            submitting = asyncio.ensure_future(
                integrator.run(submit_delays(args.seconds, every_s=submit_every_s), stopping)
            )
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                [serving, waiter], timeout=args.seconds, return_when=asyncio.FIRST_COMPLETED
            )
            stopping.set()
            await asyncio.gather(submitting, return_exceptions=True)
            halt.set()
            shipping.cancel()
            await asyncio.gather(shipping, return_exceptions=True)
            await serving
            waiter.cancel()
            counts = await rt.store.orders.counts()
    finally:
        await sandbox.stop()
    _summary(out, feed.events, counts, sandbox.stats.dropped)
    out.write(integrator.summary(feed.events))
    return 0


def demo_store(given: Path | None) -> Path:
    """The demo's store: `--store`, else the default store path (as a config without `[store]
    path` has it). A demo starts it afresh; a file there that no demo made is no demo's to
    empty (a usage error, nothing touched), nor one another process has open."""
    try:
        path = given if given is not None else default_store_path(os.environ)
        if not path.is_absolute():
            current_directory()  # the demo's files are made there
    except NoCurrentDirectory:  # a traceback (exit 70) before
        raise UsageError(
            "the current directory cannot be named: give the demo --store /PATH"
        ) from None
    if _there(path):
        if WriterLock(path).held():
            raise TempFailure(f"{path}: another reconciler process holds this store")
        if path.is_dir():
            raise UsageError(f"{path} is a directory: give the demo a file with --store PATH")
        if not made_by_a_demo(path):
            raise UsageError(
                f"{path} holds something no demo made (a store of yours?): it is left as it is; "
                "give the demo a file of its own with --store PATH"
            )
        remove_store_files(path)
    return path


def _there(path: Path) -> bool:
    """Whether a file is at the demo's store path. Under a file is not there: the writer lock
    says so when it makes the store. os.stat, not Path.exists(): that raised for a directory
    this user may not search or a name too long (a traceback); it is the store's file error."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise file_error(f"cannot use database {path}", path, exc) from None
    return True


# Where a CCNow order is before it is shipped: a merchant's shipment can still come.
_BEFORE_SHIPMENT = frozenset(
    {
        "received",
        "paypal_hold",
        "processing",
        "getman_hold",
        "vacation_hold",
        "preorder_hold",
        "pending",
    }
)


def hold_for_shipment(sandbox: Sandbox) -> list[str]:
    """Keep a few CCNow orders pending until the demo ships them (return them): the lifecycle
    moved every one past pending before the daemon's first look on a loaded machine, and the
    demo shipped none."""
    held = [
        oid for oid in sandbox.ccnow_order_ids() if sandbox.status("ccnow", oid) in _BEFORE_SHIPMENT
    ][:DEMO_SHIPMENTS]
    for oid in held:
        sandbox.hold("ccnow", oid, "pending")
    return held


async def ship_some(
    sandbox: Sandbox,
    rt: Runtime,
    config: Config,
    every_s: float = DEMO_SHIP_EVERY_S,
    first: Sequence[str] = (),
) -> None:
    """Ship a few pending CCNow orders as `reconciler ccnow ship` does, once a pass has seen
    them pending: their `pending -> mark_shipped` comes `via action`. The orders held for the
    shipment (`first`) go first: one left out would stay pending for the whole demo."""
    sender = rt.action_sender()
    shipped = 0
    while shipped < DEMO_SHIPMENTS:
        await asyncio.sleep(every_s)
        known = await rt.store.orders.with_status("ccnow", "default", ["pending"])
        pending = sorted(
            (s.key.order_id for s in known if sandbox.status("ccnow", s.key.order_id) == "pending"),
            key=lambda order_id: order_id not in first,
        )[: DEMO_SHIPMENTS - shipped]
        if pending:
            taken = await sender.take(
                build(config.ccnow[0], "ship", pending, notes="Shipped in the demo")
            )
            # Those CCNow took: an order the lifecycle moved past pending before the post
            # (seen on a loaded machine) is refused, and another is shipped in its place.
            shipped += sum(c.state == "succeeded" for c in taken.rows)


def _summary(
    out: TextIO,
    events: list[Event],
    counts: dict[tuple[str, str, str | None], int],
    dropped: list[tuple[float, str, str]],
) -> None:
    by_status = Counter[str]()
    for (source, _, status), n in counts.items():
        by_status[f"{source} {status or '(not seen yet)'}"] += n
    by_type = Counter(e.type.value for e in events)
    changes = [e for e in events if e.type.value == "order.status_changed"]
    # By what told of each (model.Via): the demo's shipments come `via action`, not by polling.
    by_via = Counter(str(e.data["via"]) for e in changes)
    # The demo's own two ways always, the others (model.Via's words) when they told of any.
    vias = ["notification", "poll"] + [v for v in typing.get_args(Via) if by_via[v]]
    ways = [(via, "polling" if via == "poll" else via) for via in dict.fromkeys(vias)]
    how = ", ".join(f"{by_via[via]} by {word}" for via, word in ways)
    seen = {(e.order_id, e.data["status"]) for e in changes}
    later = {e.order_id for e in changes}
    caught = sum(1 for _, oid, status in dropped if (oid, status) in seen)
    superseded = sum(1 for _, oid, status in dropped if (oid, status) not in seen and oid in later)
    out.write("\nsummary\n")
    out.write(
        "  orders by status:  "
        + ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items()))
        + "\n"
    )
    out.write(
        "  events by type:    " + ", ".join(f"{k}: {v}" for k, v in sorted(by_type.items())) + "\n"
    )
    out.write(
        f"  status changes:    {len(changes)} ({how})\n"
        f"  dropped CCV notifications: {len(dropped)}: {caught} caught by polling, "
        f"{superseded} overtaken by a later change, {len(dropped) - caught - superseded} "
        "not yet due for a poll\n"
    )
    out.flush()


def feed_only_logging() -> None:
    """Quiet the log to warnings: the feed is the output, event log lines would only repeat it."""
    logging.getLogger("reconciler.events").setLevel(logging.CRITICAL + 1)
    logging.getLogger("reconciler").setLevel(
        max(logging.WARNING, logging.getLogger("reconciler").level)
    )


async def _run_until_signalled(args: argparse.Namespace, out: TextIO) -> int:
    stop = asyncio.Event()
    # As `run` has them: a closed terminal ends the demo with its summary and a clean close of
    # its store.
    eventloop.stop_once(stop, eventloop.stop_signals())
    return await run_demo(args, out, stop)


def demo_command(args: argparse.Namespace) -> int:
    """Entry point of `reconciler demo`: Ctrl-C, SIGTERM or SIGHUP ends it with its summary."""
    # Before the event loop: a store it must not empty is a usage error, not a failure in it.
    args.store = demo_store(args.store)
    feed_only_logging()
    try:
        return eventloop.run(_run_until_signalled(args, sys.stdout))
    except KeyboardInterrupt:
        return 0
