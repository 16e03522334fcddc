"""The simulator's world: options, orders and the seeded random walk of their lifecycles."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from reconciler.model import (
    EXTERNAL_REFERENCE_MAX_LENGTH,
    InvalidOrderId,
    Source,
    known_statuses,
    normalize_ccnow_id,
)

from .options import History, SandboxOptions, SandboxStats, check_notification_url

log = logging.getLogger("reconciler.sandbox")

# The advance loop looks at the clock at least this often, so an injected clock that jumps is seen.
MAX_IDLE_S = 1.0
MEAN_STEP_S = 4.0


# A weighted random walk: status -> ((next status, weight), ...). `None` means "stays for good";
# a status without an entry never moves on its own.
Lifecycle = Mapping[str, tuple[tuple[str | None, float], ...]]

CCV_LIFECYCLE: Final[Lifecycle] = {
    "Processing": (("Incomplete", 1.0),),
    "Incomplete": (("AwaitingPayment", 6.0), ("Screening", 3.0), ("Canceled", 1.0)),
    "AwaitingPayment": (("Screening", 8.5), ("Canceled", 1.0), ("Failed", 0.5)),
    "Screening": (("New", 9.0), ("Closed", 1.0)),
    # ErpInProgress is "reserved for further use": a few orders pass through it all the same.
    "New": (("FulfillmentInProgress", 6.0), ("FulfillmentDone", 4.0), ("ErpInProgress", 1.5)),
    "ErpInProgress": (("FulfillmentInProgress", 1.0),),
    "FulfillmentInProgress": (("FulfillmentDone", 1.0),),
    "FulfillmentDone": (("Completed", 1.0),),
}

CCNOW_LIFECYCLE: Final[Lifecycle] = {
    "received": (("processing", 7.0), ("paypal_hold", 3.0)),
    "paypal_hold": (("processing", 9.0), ("declined", 1.0)),
    "processing": (
        ("pending", 7.0),
        ("getman_hold", 0.7),
        ("vacation_hold", 0.7),
        ("preorder_hold", 0.6),
        ("declined", 0.6),
        ("rejected", 0.4),
    ),
    "getman_hold": (("pending", 8.0), ("rejected", 2.0)),
    "vacation_hold": (("pending", 1.0),),
    "preorder_hold": (("pending", 1.0),),
    "pending": (("mark_shipped", 8.0), ("mark_canceled", 2.0)),
    "mark_shipped": (("completed", 1.0),),
    "mark_canceled": (("canceled", 1.0),),
    "completed": (("refunded", 1.0), ("chargeback", 0.5), (None, 8.5)),
}

LIFECYCLES: Final[Mapping[Source, Lifecycle]] = {"ccv": CCV_LIFECYCLE, "ccnow": CCNOW_LIFECYCLE}
# A discount (`adjust`) is refunded once the order completes: CCNow "will automatically do a
# partial refund on the order after the order reaches completion".
_DISCOUNTED_COMPLETED = (("refunded", 9.0), ("chargeback", 0.5), (None, 0.5))

# Where the initial population starts: spread over the lifecycle, a few already finished.
_START_WEIGHTS: Final[Mapping[Source, Mapping[str, float]]] = {
    "ccv": {
        "Processing": 3,
        "Incomplete": 3,
        "AwaitingPayment": 3,
        "Screening": 3,
        "New": 2,
        "ErpInProgress": 1,
        "FulfillmentInProgress": 2,
        "FulfillmentDone": 2,
        "Completed": 1,
        "Closed": 0.5,
        "Canceled": 0.5,
        "Failed": 0.5,
    },
    "ccnow": {
        "received": 2,
        "paypal_hold": 1,
        "processing": 2,
        "getman_hold": 0.5,
        "vacation_hold": 0.5,
        "preorder_hold": 0.5,
        "pending": 6,
        "mark_shipped": 1,
        "completed": 2,
        "mark_canceled": 0.5,
        "canceled": 0.5,
        "declined": 0.5,
        "rejected": 0.3,
        "refunded": 0.5,
        "chargeback": 0.2,
        # Completed test orders: placed as tests, never moving on.
        "test": 0.5,
    },
}


def next_steps(order: Order) -> tuple[tuple[str | None, float], ...]:
    """Return the weighted next statuses of an order."""
    if order.source == "ccnow" and order.status == "completed" and order.discount_cents:
        return _DISCOUNTED_COMPLETED
    return LIFECYCLES[order.source].get(order.status, ())


_STATUS_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(eq=False)
class Order:
    """One simulated order (mutable state, owned by Sandbox)."""

    source: Source
    id: str
    status: str
    history: History
    external_reference: str | None = None
    notification_url: str | None = None
    notify_on: frozenset[str] = frozenset()  # empty: every status
    next_at: float | None = None
    body: bytes = b""  # CCV status answer, rebuilt on every change
    # CCNow `adjust` and `track` actions taken: the discount in cents, the shipments
    discount_cents: int = 0
    tracking: list[tuple[str, str]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "externalReference": self.external_reference}


def ccv_body(order: Order) -> bytes:
    answer = {"orderStatus": order.status}
    if order.external_reference is not None:
        answer["externalReference"] = order.external_reference
    return json.dumps(answer, separators=(",", ":")).encode()


def hyphenated(digits: int) -> str:
    text = f"{digits:09d}"
    return f"{text[:3]}-{text[3:5]}-{text[5:]}"


def check_notify_on(values: object) -> frozenset[str]:
    ccv_statuses = known_statuses("ccv")
    if not isinstance(values, list) or not all(v in ccv_statuses for v in values):
        raise ValueError(
            f"notifyOnStatus must be a list of CCV statuses ({', '.join(ccv_statuses)})"
        )
    return frozenset(values)


# Called on every status change, before the order's next step is drawn from the same rng.
ChangeHook = Callable[[Order, float, random.Random], None]


class World:
    """Every simulated order of both providers, and the seeded random walk that moves them."""

    def __init__(
        self,
        options: SandboxOptions,
        stats: SandboxStats,
        *,
        now: Callable[[], float] = time.monotonic,
        on_change: ChangeHook,
    ) -> None:
        self.options = options
        self.stats = stats
        self.now = now
        self._on_change = on_change
        self._rng = random.Random(options.seed)
        self.ccv: dict[str, Order] = {}
        self.ccnow: dict[str, Order] = {}
        # (due time, tie-breaker, order); entries whose time no longer matches are stale
        self._due: list[tuple[float, int, Order]] = []
        self._due_seq = 0
        self._wake = asyncio.Event()
        self._populate()

    def order(self, source: str, order_id: str) -> Order:
        """Return one order; KeyError when the source or the order is unknown."""
        if source == "ccv":
            return self.ccv[order_id]
        if source == "ccnow":
            try:
                return self.ccnow[normalize_ccnow_id(order_id)]
            except InvalidOrderId:
                raise KeyError(order_id) from None
        raise KeyError(source)

    def hold(self, source: str, order_id: str, status: str) -> None:
        """Move one order to `status` now and leave it there until a change from outside (a
        CCNow action, set_status): a merchant's order waiting for its shipment."""
        self.set_status(source, order_id, status)
        self.order(source, order_id).next_at = None  # its step drawn, if any, is stale now

    def set_status(self, source: str, order_id: str, status: str) -> None:
        """Move one order to `status` now (any status word); KeyError / ValueError when bad."""
        order = self.order(source, order_id)
        if not _STATUS_WORD.match(status):
            raise ValueError(f"not a status word: {status!r}")
        if status != order.status:
            self.change(order, status, self.now(), self.rng_for(order, "set"))

    def create_ccv_order(
        self,
        external_reference: str | None = None,
        notification_url: str | None = None,
        notify_on: list[str] | None = None,
    ) -> str:
        """Create a CCV order in status Processing; return its id. ValueError on bad input."""
        if external_reference is not None and not (
            isinstance(external_reference, str)
            and 0 < len(external_reference) <= EXTERNAL_REFERENCE_MAX_LENGTH
        ):
            raise ValueError(
                f"externalReference must be 1 to {EXTERNAL_REFERENCE_MAX_LENGTH} characters"
            )
        url = None if notification_url is None else check_notification_url(notification_url)
        statuses = frozenset() if notify_on is None else check_notify_on(notify_on)
        order = self._add("ccv", self._new_ccv_id(), "Processing", external_reference)
        order.notification_url = url
        order.notify_on = statuses
        self._schedule(order, order.history[0][0], self.rng_for(order, "start"))
        return order.id

    def advance(self) -> int:
        """Take every lifecycle step due by now(); return how many status changes it made."""
        now = self.now()
        moved = 0
        while self._due and self._due[0][0] <= now:
            at, _, order = heapq.heappop(self._due)
            if order.next_at != at:
                continue
            order.next_at = None
            choices = next_steps(order)
            if not choices:
                continue
            rng = self.rng_for(order, "step")
            target = rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
            if target is not None:
                # Step from the due time, not from now, so a late tick replays the same walk.
                self.change(order, target, at, rng)
                moved += 1
        return moved

    async def run(self) -> None:
        """Advance the lifecycle as time passes, until cancelled."""
        while True:
            self.advance()
            self._wake.clear()
            delay = MAX_IDLE_S
            if self._due:
                delay = min(MAX_IDLE_S, max(0.0, self._due[0][0] - self.now()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def rng_for(self, order: Order, purpose: str) -> random.Random:
        """Return the random stream of one order's next step."""
        # One stream per order and step: an order's walk depends on the seed and its own history
        # only, never on how the ticks of other orders interleave.
        step = len(order.history)
        return random.Random(f"{self.options.seed}/{order.source}/{order.id}/{step}/{purpose}")

    def change(self, order: Order, status: str, at: float, rng: random.Random) -> None:
        """Record a status change at `at`, tell the hook, and draw the order's next step."""
        previous = order.status
        order.status = status
        order.history.append((at, status))
        self.stats.transitions += 1
        log.debug(
            "sandbox.transition",
            extra={
                "fields": {
                    "source": order.source,
                    "order_id": order.id,
                    "from": previous,
                    "to": status,
                }
            },
        )
        if order.source == "ccv":
            order.body = ccv_body(order)
        self._on_change(order, at, rng)
        self._schedule(order, at, rng)

    def _populate(self) -> None:
        t0 = self.now()
        for source in ("ccv", "ccnow"):
            weights = _START_WEIGHTS[source]
            for index in range(self.options.orders):
                starts = self._rng.choices(list(weights), weights=list(weights.values()))
                if source == "ccv":
                    ref = f"ref-{index + 1:06d}" if self._rng.random() < 0.5 else None
                    order = self._add("ccv", self._new_ccv_id(), starts[0], ref, t0)
                else:
                    order = self._add("ccnow", self._new_ccnow_id(), starts[0], None, t0)
                self._schedule(order, t0, self.rng_for(order, "start"))

    def _new_ccv_id(self) -> str:
        while True:
            oid = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            if oid not in self.ccv:
                return oid

    def _new_ccnow_id(self) -> str:
        while True:
            oid = hyphenated(self._rng.randrange(100_000_000, 1_000_000_000))
            if oid not in self.ccnow:
                return oid

    def _add(
        self,
        source: Source,
        oid: str,
        status: str,
        ref: str | None,
        at: float | None = None,
    ) -> Order:
        at = self.now() if at is None else at
        history: History = [(at, status)]
        order = Order(source, oid, status, history, external_reference=ref)
        self.stats.history[source][oid] = history
        if source == "ccv":
            order.body = ccv_body(order)
            self.ccv[oid] = order
        else:
            self.ccnow[oid] = order
        return order

    def _schedule(self, order: Order, at: float, rng: random.Random) -> None:
        order.next_at = None
        if not self.options.advance or not LIFECYCLES[order.source].get(order.status):
            return
        delay = rng.expovariate(1.0 / MEAN_STEP_S) / self.options.speed
        order.next_at = at + delay
        self._due_seq += 1
        heapq.heappush(self._due, (order.next_at, self._due_seq, order))
        self._wake.set()
