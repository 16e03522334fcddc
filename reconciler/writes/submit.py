"""CCV submit through reconciler: the order is followed from its first second.

The body is made ready (submit_body.py: reconciler's signed notification URL), the submission
committed before anything is sent, sent once, and closed with CCV's answer (submit_outcome.py:
the order tracked in the same transaction). An answer that is lost makes it `uncertain`: never
re-sent, an `order.submit_uncertain` event, settled later by the first notification for the
reference or by `track ccv ID --ref REF`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence

import aiohttp

from reconciler.config import CCVConfig, ReceiverConfig
from reconciler.logs import fields
from reconciler.passes.hint_gate import HintGate
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.writes.ccv_http import NotSent, Uncertain, send_once
from reconciler.writes.failpoint import failpoint
from reconciler.writes.in_flight import InFlight, Stopping
from reconciler.writes.submit_body import BadSubmission, prepare
from reconciler.writes.submit_outcome import Closing, Result, close, json_result, uncertain

log = logging.getLogger("reconciler.writes.submit")

SUBMIT_PATH = "/api/ordercompletion/reseller/order"


class Submitter:
    """Submits CCV orders durably; one per process, sharing the writer's store."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        *,
        accounts: Sequence[CCVConfig],
        receiver: ReceiverConfig | None,
        gates: Gates,
        order_id_fields: Sequence[str] = ("orderId", "id"),
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        gate: HintGate | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.store = store
        self.session = session
        # Each account's bound on its requests in flight, shared with its checks (the
        # process's Gates): a submit waits for its turn like any of them.
        self.gates = gates
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
        # The submits recorded here and not sent yet, by (account, reference): a stop may yet
        # withdraw one, so a duplicate waits for its fate (True: it left, or its row stays).
        self._unsent: dict[tuple[str, str], asyncio.Future[bool]] = {}

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
            return json_result(503, {"error": stopping, "external_reference": ref}, ref, None)

    async def _record_and_send(self, cfg: CCVConfig, account: str, ref: str, data: bytes) -> Result:
        key = (account, ref)
        mine = key not in self._unsent
        if mine:
            self._unsent[key] = asyncio.get_running_loop().create_future()
        turn = self._unsent[key]
        try:
            return await self._record_and_send_once(cfg, account, ref, data, turn, mine=mine)
        finally:
            if mine:
                del self._unsent[key]
                _decide(turn, True)

    async def _record_and_send_once(
        self,
        cfg: CCVConfig,
        account: str,
        ref: str,
        data: bytes,
        turn: asyncio.Future[bool],
        *,
        mine: bool,
    ) -> Result:
        try:
            sub_id = await subs.record(self.store, account, ref, self.clock())
        except subs.SubmissionExists as exc:
            old = exc.existing
            if not mine and old.state == "sending":
                # The earlier submit of this reference waits for its turn: a stop beginning now
                # withdraws it (503), and this caller must not hold a 409 for it meanwhile.
                log.debug(
                    "ccv.submit_waits_for_earlier",
                    extra=fields(account=account, external_reference=ref),
                )
                if not await asyncio.shield(turn):
                    raise Stopping from None
            return json_result(
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
            answer = await send_once(
                self.session,
                cfg,
                "POST",
                SUBMIT_PATH,
                data,
                gate=self.gates.of(cfg),
                halt=self.in_flight.halt,
                leaving=lambda: _decide(turn, True) if mine else None,
            )
        except Stopping:
            # The stop began while it waited for its account's turn: it never left, so it is
            # not kept either; the caller is told to submit it again (503), as before `record`,
            # and so is a duplicate that came meanwhile.
            await subs.withdraw(self.store, sub_id)
            if mine:
                _decide(turn, False)
            raise
        except NotSent as exc:
            await subs.fail(self.store, sub_id, http_status=None, reason=str(exc), now=self.clock())
            log.warning(
                "ccv.submit_not_sent", extra=fields(account=account, external_reference=ref)
            )
            return json_result(
                502,
                {"error": "CCV could not be reached; nothing was sent", "external_reference": ref},
                ref,
                "failed",
            )
        except Uncertain as exc:
            closing = Closing(self.store, self.order_id_fields, self.clock(), self.on_commit)
            await uncertain(closing, account, sub_id, ref, str(exc))
            return json_result(
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
        closing = Closing(self.store, self.order_id_fields, self.clock(), self.on_commit)
        return await close(closing, sub_id, account, ref, answer)


def _decide(turn: asyncio.Future[bool], left: bool) -> None:
    """Tell the duplicates waiting on a submit whether it left (or its row stays): False, it
    was withdrawn."""
    if not turn.done():
        turn.set_result(left)
