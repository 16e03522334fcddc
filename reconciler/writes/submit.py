"""CCV submit through reconciler: the order is followed from its first second.

The body gets reconciler's signed notification URL for its external reference (generated when
absent) and `notifyOnStatus`; the submission is committed before anything is sent, sent once,
and closed with CCV's answer, the order tracked in the same transaction. An answer that is lost
makes it `uncertain`: never re-sent, an `order.submit_uncertain` event, settled later by the
first notification for the reference or by `track ccv ID --ref REF`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from reconciler.config import CCVConfig, ReceiverConfig
from reconciler.events import submit_uncertain_event
from reconciler.logs import fields
from reconciler.model import (
    InvalidOrderId,
    OrderKey,
    known_statuses,
    reference_problem,
    validate_ccv_id,
)
from reconciler.notify import notification_url
from reconciler.passes.hint_gate import HintGate
from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.writes.ccv_http import NotSent, Uncertain, send_once
from reconciler.writes.in_flight import InFlight, Stopping

log = logging.getLogger("reconciler.writes.submit")

SUBMIT_PATH = "/api/ordercompletion/reseller/order"
REFERENCE_HEADER = "Reconciler-External-Reference"
ORDER_ID_HEADER = "Reconciler-Order-Id"


class BadSubmission(Exception):
    """A submit body reconciler refuses to forward; names the JSON field."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Prepared:
    """A submit body ready to forward, and the external reference it carries."""

    body: dict[str, Any]
    reference: str


def new_reference() -> str:
    """Return a fresh external reference for a submission that has none."""
    return f"rc-{uuid.uuid4().hex}"


def prepare(
    body: object,
    *,
    receiver: ReceiverConfig,
    account: str,
    make_reference: Callable[[], str] = new_reference,
) -> Prepared:
    """Return the body to send to CCV, with reconciler's notification URL; raise BadSubmission."""
    if not isinstance(body, dict):
        raise BadSubmission("$", "the body must be a JSON object", 400)
    if not isinstance(body.get("notifyCustomerByEmail"), bool):
        raise BadSubmission("notifyCustomerByEmail", "required, a boolean")
    if not isinstance(body.get("order"), dict):
        raise BadSubmission("order", "required, an object (made with the order configurator)")
    reference = body.get("externalReference")
    if reference is None:
        reference = make_reference()
    elif not isinstance(reference, str):
        raise BadSubmission("externalReference", "must be a string")
    elif problem := reference_problem(reference):
        raise BadSubmission("externalReference", problem)
    info = body.get("statusNotificationInformation")
    if info is None:
        info = {}
    elif not isinstance(info, dict):
        raise BadSubmission("statusNotificationInformation", "must be an object")
    if info.get("notificationUrl") is not None:
        raise BadSubmission(
            "statusNotificationInformation.notificationUrl",
            "reconciler sets the notification URL itself; CCV would notify someone else",
        )
    statuses = info.get("notifyOnStatus")
    if statuses is None:
        statuses = known_statuses("ccv")
    else:
        _check_statuses(statuses)
    url = notification_url(receiver, account, reference=reference)
    info = {**info, "notificationUrl": url, "notifyOnStatus": list(statuses)}
    return Prepared(
        {**body, "externalReference": reference, "statusNotificationInformation": info}, reference
    )


def _check_statuses(statuses: object) -> None:
    where = "statusNotificationInformation.notifyOnStatus"
    if not isinstance(statuses, list) or not statuses:
        raise BadSubmission(where, "must be a non-empty array of CCV statuses")
    known = known_statuses("ccv")
    for i, status in enumerate(statuses):
        if status not in known:
            raise BadSubmission(f"{where}[{i}]", f"not a CCV status (one of {', '.join(known)})")


def order_id_from(answer: bytes, names: Sequence[str]) -> str | None:
    """Return the new order's id from CCV's success answer (the field is not documented)."""
    try:
        document = json.loads(answer)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    for name in names:
        value = document.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            try:
                return validate_ccv_id(value)
            except InvalidOrderId:
                continue  # an unusable field (`"orderId": ""`) leaves the next one to try
    return None


@dataclass(frozen=True, slots=True)
class Result:
    """What the caller of a submit gets back: an HTTP status, a body and headers."""

    status: int
    body: bytes
    content_type: str
    reference: str
    state: subs.State | None  # None: refused before anything was recorded
    order_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _json_result(
    status: int, document: Mapping[str, object], reference: str, state: subs.State | None
) -> Result:
    # The reference header on reconciler's own answers too (409, 502, 504), as on CCV's.
    headers = {REFERENCE_HEADER: reference}
    return Result(
        status, json.dumps(document).encode(), "application/json", reference, state, None, headers
    )


def failpoint(name: str) -> None:
    """Test-only: SIGKILL this process at the named point when RECONCILER_FAILPOINT names it,
    so that the crash tests can stop it exactly between two steps. Unset in production."""
    if os.environ.get("RECONCILER_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Submitter:
    """Submits CCV orders durably; one per process, sharing the writer's store."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        *,
        accounts: Sequence[CCVConfig],
        receiver: ReceiverConfig | None,
        order_id_fields: Sequence[str] = ("orderId", "id"),
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        gate: HintGate | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.accounts = {c.name: c for c in accounts}
        self.receiver = receiver
        self.order_id_fields = tuple(order_id_fields)
        self.on_commit = on_commit
        self.clock = clock
        # The daemon's passes give way while a submit runs, as for a notification's check: the
        # caller waits on its answer, and a pass over many orders (the just-submitted ones' first
        # checks among them) would otherwise share the event loop and the writer with it.
        self.gate = gate
        self.in_flight = in_flight or InFlight()

    async def submit(self, account: str, body: object) -> Result:
        """Submit one order body; bad input raises BadSubmission before anything is recorded."""
        with self.gate.writing() if self.gate is not None else contextlib.nullcontext():
            return await self._submit(account, body)

    async def _submit(self, account: str, body: object) -> Result:
        cfg = self.accounts.get(account)
        if cfg is None:
            raise BadSubmission("account", f"no CCV account named {account!r}", 404)
        if self.receiver is None:
            raise BadSubmission(
                "receiver", "submitting needs a [receiver] (it signs the notification URL)", 409
            )
        prepared = prepare(body, receiver=self.receiver, account=account)
        ref = prepared.reference
        # Encoded before it is recorded: a body that cannot be sent must leave no submission.
        payload = json.dumps(prepared.body, ensure_ascii=False, allow_nan=False).encode()
        try:
            return await self.in_flight.run(self._record_and_send(cfg, account, ref, payload))
        except Stopping:
            stopping = "reconciler is stopping; nothing was recorded or sent: submit it again"
            return _json_result(503, {"error": stopping, "external_reference": ref}, ref, None)

    async def _record_and_send(self, cfg: CCVConfig, account: str, ref: str, data: bytes) -> Result:
        try:
            sub_id = await subs.record(self.store, account, ref, self.clock())
        except subs.SubmissionExists as exc:
            old = exc.existing
            return _json_result(
                409,
                {
                    "error": "this externalReference was submitted already; not sent again",
                    "field": "externalReference",
                    "state": old.state,
                    "order_id": old.order_id,
                    "external_reference": ref,
                },
                ref,
                old.state,
            )
        failpoint("submit.recorded")
        try:
            answer = await send_once(self.session, cfg, "POST", SUBMIT_PATH, data)
        except NotSent as exc:
            await subs.fail(self.store, sub_id, http_status=None, reason=str(exc), now=self.clock())
            log.warning(
                "ccv.submit_not_sent", extra=fields(account=account, external_reference=ref)
            )
            return _json_result(
                502,
                {"error": "CCV could not be reached; nothing was sent", "external_reference": ref},
                ref,
                "failed",
            )
        except Uncertain as exc:
            await self.make_uncertain(account, [(sub_id, ref)], str(exc))
            return _json_result(
                504 if str(exc) == "timeout" else 502,
                {
                    "error": "CCV's answer was lost; the order may exist. It will not be sent "
                    "again: the first notification for its reference, or `reconciler track "
                    "ccv ID --ref REF`, settles it",
                    "state": "uncertain",
                    "external_reference": ref,
                },
                ref,
                "uncertain",
            )
        return await self._close(
            sub_id, account, ref, answer.status, answer.body, answer.content_type
        )

    async def _close(
        self, sub_id: int, account: str, ref: str, status: int, body: bytes, content_type: str
    ) -> Result:
        now = self.clock()
        headers = {REFERENCE_HEADER: ref}
        if 200 <= status < 300:
            order_id = order_id_from(body, self.order_id_fields)
            if order_id is None:
                # CCV made the order, but where its answer keeps the id is not documented: the
                # order would go unfollowed. A person is told (one event), finds the order at
                # CCV and tracks it with the reference.
                log.warning(
                    "ccv.submit_no_order_id",
                    extra=fields(
                        account=account, external_reference=ref, fields=list(self.order_id_fields)
                    ),
                )
                await self.make_uncertain(account, [(sub_id, ref)], "no_order_id", status)
                return Result(status, body, content_type, ref, "uncertain", None, headers)
            if not await subs.succeed(
                self.store,
                sub_id,
                account=account,
                reference=ref,
                order_id=order_id,
                http_status=status,
                now=now,
            ):
                # CCV named an order followed under another reference: taking it for this
                # submit would move that reference's notifications and events to this one. Left
                # as it is; which order this submit made is for a person to find out.
                followed = await self._followed_reference(account, order_id)
                log.warning(
                    "ccv.submit_order_followed_elsewhere",
                    extra=fields(
                        account=account,
                        external_reference=ref,
                        order_id=order_id,
                        followed_reference=followed,
                    ),
                )
                reason = (
                    f"order_followed_elsewhere: CCV answered order {order_id}, followed under "
                    f"reference {followed}, not {ref}"
                )
                await self.make_uncertain(account, [(sub_id, ref)], reason, status)
                return Result(status, body, content_type, ref, "uncertain", None, headers)
            headers[ORDER_ID_HEADER] = order_id
            log.info(
                "ccv.submitted",
                extra=fields(
                    account=account, external_reference=ref, order_id=order_id, status=status
                ),
            )
            return Result(status, body, content_type, ref, "succeeded", order_id, headers)
        if status >= 500:
            # CCV's "Server error" may come after the order was made (or from a gateway after
            # CCV got it): as with a lost answer, never sent again; a person settles it.
            await self.make_uncertain(account, [(sub_id, ref)], f"http_{status}", status)
            return Result(status, body, content_type, ref, "uncertain", None, headers)
        await subs.fail(self.store, sub_id, http_status=status, reason=f"http_{status}", now=now)
        log.warning(
            "ccv.submit_refused",
            extra=fields(account=account, external_reference=ref, status=status),
        )
        return Result(status, body, content_type, ref, "failed", None, headers)

    async def _followed_reference(self, account: str, order_id: str) -> str | None:
        key = OrderKey("ccv", account, order_id)
        found = (await self.store.orders.load([key])).get(key)
        return None if found is None else found.external_reference

    async def make_uncertain(
        self,
        account: str,
        submissions: Sequence[tuple[int, str]],
        reason: str,
        http_status: int | None = None,
    ) -> None:
        """Mark submissions uncertain with one `order.submit_uncertain` event each."""
        await make_uncertain(
            self.store, account, submissions, reason, now=self.clock(), http_status=http_status
        )
        self.on_commit()


async def make_uncertain(
    store: Store,
    account: str,
    submissions: Sequence[tuple[int, str]],
    reason: str,
    *,
    now: float,
    http_status: int | None = None,
) -> None:
    """Mark submissions (id, reference) uncertain with one `order.submit_uncertain` each; one
    whose reference a notification named while it waited for CCV's answer is settled at once,
    with its `order.submit_resolved`."""
    events = [
        submit_uncertain_event(
            store.store_id, sub_id, account=account, reference=ref, time=now, reason=reason
        )
        for sub_id, ref in submissions
    ]
    ids = [s for s, _ in submissions]
    resolved = await subs.make_uncertain(
        store, account, ids, events, reason=reason, now=now, http_status=http_status
    )
    for event in resolved:
        log.info(
            "ccv.submit_resolved",
            extra=fields(
                account=account,
                external_reference=event.data["external_reference"],
                how="notification",
            ),
        )
