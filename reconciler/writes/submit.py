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
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal

import aiohttp

from reconciler.config import CCVConfig, ReceiverConfig
from reconciler.logs import fields
from reconciler.passes.hint_gate import HintGate
from reconciler.redact import (
    GIVEN_SECRET,
    SecretForms,
    answer_forms,
    given_secrets,
    held,
    holds_secret,
)
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.store.not_sent import made, not_sent
from reconciler.writes.body_secrets import refuse_secrets
from reconciler.writes.ccv_http import NotSent, Uncertain, send_once
from reconciler.writes.failpoint import failpoint
from reconciler.writes.in_flight import Cut, InFlight, Stopping
from reconciler.writes.submit_advice import (
    Progress,
    cut_off,
    followed_elsewhere,
    not_sent_refused,
    nothing_sent,
    submitted_already,
)
from reconciler.writes.submit_body import BadSubmission, prepare
from reconciler.writes.submit_outcome import (
    Closing,
    Result,
    close,
    json_result,
    ref_option,
    uncertain,
)
from reconciler.writes.submit_prices import check_cart
from reconciler.writes.submit_refused import followed_already

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
        secrets: Sequence[str] = (),
    ) -> None:
        self.store = store
        # The config's secrets, masked in a `Location` CCV answered before it is kept, as in
        # the header passed on (else the accounts' API keys).
        self.secrets = held(secrets) or held(c.api_key.reveal() for c in accounts)
        # The config's secrets an external reference given must not hold (else the account's
        # API key's), as for an order id given to `track`.
        self.given = given_secrets(secrets) if secrets else None
        self.session = session
        # Each account's bound on its requests in flight, shared with its checks (the
        # process's Gates): a submit waits for its turn like any of them.
        self.gates = gates
        self.accounts = {c.name: c for c in accounts}
        # What CCV's answer must not hold to be taken for an order id: the account's key and
        # the config's other `secrets` (CCV may echo any of them; the id is printed and kept).
        self.key_forms: dict[str, SecretForms | None] = {
            c.name: answer_forms(c.api_key.reveal(), secrets) for c in accounts
        }
        self.receiver = receiver
        self.order_id_fields = tuple(order_id_fields)
        self.on_commit = on_commit
        self.clock = clock
        # The daemon's passes give way while a submit runs, as for a notification's check: the
        # caller waits on its answer, and a pass over many orders (the just-submitted ones' first
        # checks among them) would otherwise share the event loop and the writer with it.
        self.gate = gate
        self.in_flight = in_flight or InFlight()
        # The submits under way here, by (account, reference): a duplicate waits for the one
        # before it to end (a stop may withdraw it, its connection may fail: then it may go).
        self._unsent: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def settle(
        self, account: str, reference: str, how: Literal["not_sent", "made"]
    ) -> tuple[bool, subs.Submission | None]:
        """Settle the uncertain submission of a reference by a person's word: CCV never got it
        (`not_sent`: `ccv resolve --not-sent`), or made an order of it that reconciler will not
        follow (`made`: `ccv resolve --made`); return whether it was settled, and the
        submission of the reference as it is then (None: nothing was submitted with it)."""
        word = made if how == "made" else not_sent
        sub, events = await word(self.store, account, reference, self.clock())
        if not events:
            return False, sub
        log.info(
            "ccv.submit_resolved",
            extra=fields(account=account, external_reference=reference, how=how),
        )
        self.on_commit()
        return True, sub

    async def submit(self, account: str, body: dict[str, object]) -> Result:
        """Submit one order body; bad input raises BadSubmission before anything is recorded."""
        with self.gate.writing() if self.gate is not None else contextlib.nullcontext():
            result = await self._submit(account, body)
        if result.state not in ("uncertain", "resolved"):
            return result
        # What its caller advises comes from the submission as stored (the one a `409`
        # named among them): a notification that came before CCV's answer, the answer's
        # reason, are known only there.
        ref = result.reference
        found = await subs.find(self.store, account, ref)
        relink = found is not None and followed_elsewhere(found)
        refused = not_sent_refused(ref, found)
        # Its state too, read once with the rest: a notification may have settled it since it
        # was closed (`uncertain` beside a refusal saying it is resolved, else).
        state = result.state if found is None else found.state
        if result.lost is not None:
            # Its advice from the same row as the refusal, so that the body never advises the
            # word that the header says is refused.
            result = lost_answer(result.status, result.lost, ref, state, made=refused is not None)
        return dataclasses.replace(
            result,
            state=state,
            not_sent_refused=refused,
            relink=relink,
            untrackable=subs.untrackable(found),
        )

    async def _submit(self, account: str, body: dict[str, object]) -> Result:
        cfg = self.accounts.get(account)
        if cfg is None:
            raise BadSubmission("account", f"no CCV account named {account!r}", 404)
        if self.receiver is None:
            raise BadSubmission(
                "receiver", "submitting needs a [receiver] (it signs the notification URL)", 409
            )
        # Before the body's checks, whose refusal of a malformed reference quotes it (one made
        # here holds no secret).
        given = body.get("externalReference")
        if isinstance(given, str) and holds_secret(
            given, self.given or self.key_forms.get(account)
        ):
            raise BadSubmission("externalReference", GIVEN_SECRET)
        # Any other string of it, keys included: CCV is sent no secret but its key, and that
        # in the Authorization header.
        refuse_secrets(body, self.given or self.key_forms.get(account))
        prepared = prepare(body, receiver=self.receiver, account=account)
        warnings = check_cart(body)  # DESIGN.md: a submit goes out with its prices checked
        ref = prepared.reference
        # Encoded before it is recorded: a body that cannot be sent must leave no submission.
        payload = json.dumps(prepared.body, ensure_ascii=False, allow_nan=False).encode()
        if not body.get("externalReference"):
            # Made here: named before CCV may make the order, so that a process killed while it
            # answers leaves it known to its caller (one line a submit costs 0.3 ms: only then).
            log.info("ccv.submit_sending", extra=fields(account=account, external_reference=ref))
        # Where this call stands, for the answer to a cut: the row of its reference found then
        # may be another call's (one this call waited for), or settled by a notification.
        progress = Progress()
        try:
            result = await self.in_flight.run(
                self._record_and_send(cfg, account, ref, payload, progress)
            )
        except Stopping:
            result = nothing_sent(ref)
        except Cut:
            # Cut off at the stop's bound, CCV silent: the caller learns the reference (one
            # made here among them) and where it stands, not a connection closed unanswered.
            result = cut_off(ref, await subs.find(self.store, account, ref), progress)
        return dataclasses.replace(result, pricing=warnings)

    async def _record_and_send(
        self, cfg: CCVConfig, account: str, ref: str, data: bytes, progress: Progress
    ) -> Result:
        key = (account, ref)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            while True:
                self._unsent.setdefault(key, mine)  # the first to come, until it ends
                try:
                    sub_id = await subs.record(self.store, account, ref, self.clock())
                except subs.ReferenceFollowed as exc:
                    return followed_already(account, ref, exc.carried_by)
                except subs.SubmissionExists as exc:
                    old, earlier = exc.existing, self._unsent.get(key)
                    if old.state == "sending" and earlier is not None and earlier is not mine:
                        # An earlier submit of this reference, recorded here, has not ended:
                        # its end decides (withdrawn or failed: the reference is free again).
                        log.debug(
                            "ccv.submit_waits_for_earlier",
                            extra=fields(account=account, external_reference=ref),
                        )
                        progress.waiting = True
                        await asyncio.shield(earlier)
                        progress.waiting = False
                        continue
                    return submitted_already(ref, old)
                progress.sub_id = sub_id
                return await self._send(cfg, account, ref, data, sub_id, progress)
        finally:
            if self._unsent.get(key) is mine:
                del self._unsent[key]
            mine.set_result(None)

    async def _send(
        self, cfg: CCVConfig, account: str, ref: str, data: bytes, sub_id: int, progress: Progress
    ) -> Result:
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
            )
        except Stopping:
            # The stop began while it waited for its account's turn: it never left, so it is
            # not kept either; the caller is told to submit it again (503), as before `record`,
            # and so is a duplicate that came meanwhile. Not where its reference's notification
            # came meanwhile: kept taken, as when CCV could not be reached.
            if await subs.withdraw(self.store, sub_id):
                raise
            progress.stage = "not_sent"
            lead = "reconciler stopped before the submit went out (nothing was sent)"
            return await self._not_sent_notified(account, sub_id, ref, "stopping", lead, 503)
        except NotSent as exc:
            progress.stage = "recording"  # that CCV was not reached: it failed
            now = self.clock()
            closed = await subs.fail(
                self.store, sub_id, http_status=None, reason=str(exc), now=now, unless_notified=True
            )
            if closed == "notified":
                progress.stage = "not_sent"
                lead = f"CCV could not be reached ({exc}; nothing was sent)"
                return await self._not_sent_notified(account, sub_id, ref, str(exc), lead, 502)
            # Closed elsewhere meanwhile (nothing in this release does: a `sending` row is this
            # process's alone): its state as stored, not the `failed` it did not get.
            stored = await subs.find(self.store, account, ref) if closed != "failed" else None
            state: subs.State = "failed" if stored is None else stored.state
            log.warning(
                "ccv.submit_not_sent", extra=fields(account=account, external_reference=ref)
            )
            return json_result(
                502,
                {
                    "error": f"CCV could not be reached ({exc}); nothing was sent: submit it "
                    "again, with the same reference",
                    "state": state,
                    "external_reference": ref,
                },
                ref,
                state,
            )
        except Uncertain as exc:
            progress.stage = "recording"
            state = await uncertain(self._closing(account), account, sub_id, ref, str(exc))
            # What happened, in words: a timeout's 504 is reconciler's, not CCV's.
            lost = {
                "timeout": f"CCV gave no answer within {cfg.timeout_s:g} s (the account's timeout)",
                "connection": "the connection to CCV broke before its answer came",
            }.get(str(exc), f"CCV's answer could not be read ({exc})")
            return lost_answer(504 if str(exc) == "timeout" else 502, lost, ref, state)
        progress.stage = "recording"
        return await close(self._closing(account), sub_id, account, ref, answer)

    async def _not_sent_notified(
        self, account: str, sub_id: int, ref: str, reason: str, lead: str, status: int
    ) -> Result:
        """The submit never left (`lead` says why: CCV not reached, the stop), but a
        notification for its reference came while it waited: CCV has an order of it (an
        earlier submit's). Freed, the reference would be sent again, a second order: kept
        taken, settled by that notification as a lost answer is (`reason` kept), one warning."""
        log.warning(
            "ccv.submit_failed_contradicted",
            extra=fields(account=account, external_reference=ref, status=None, reason=reason),
        )
        state = await uncertain(self._closing(account), account, sub_id, ref, reason)
        error = (
            f"{lead}, but a CCV notification for external reference {ref} came meanwhile: CCV "
            f"has an order of it, and the submit is {state} (the reference is not sent again); "
            f"find the order at CCV and run `reconciler track ccv ID {ref_option(ref)}`"
        )
        document = {"error": error, "state": state, "external_reference": ref}
        # Its own words what happened, as a lost answer's: `ccv submit` adds where it stands.
        return json_result(status, document, ref, state, own=lead)

    def _closing(self, account: str) -> Closing:
        return Closing(
            self.store,
            self.order_id_fields,
            self.clock(),
            self.on_commit,
            self.key_forms.get(account),
            self.secrets,
        )


def lost_answer(
    status: int, lost: str, ref: str, state: subs.State, *, made: bool = False
) -> Result:
    """reconciler's answer where CCV's was lost (`lost`: how, in words), for the submission of
    `ref` as it stands (`state`); `made`: `ccv resolve --not-sent` is refused for it
    (`not_sent_refused`: an answer came whose head could not be read, which may have said CCV
    made the order), so it is not advised."""
    if state == "resolved":
        # A notification for the reference came while it waited: CCV has the order, and a
        # person's word that it has none would be wrong (no `--not-sent` advised).
        error = (
            f"{lost}, but a notification for its reference came meanwhile: CCV has the "
            "order (the submit is resolved and will not be sent again). Its order is "
            "followed once you track it: `reconciler track ccv ID --ref REF`"
        )
    elif made:
        error = (
            f"{lost}; CCV got the submit and may have made the order. It will not be sent "
            "again: find the order at CCV and run `reconciler track ccv ID --ref REF`"
        )
    else:
        error = (
            f"{lost}; the order may exist. It will not be sent again: the first "
            "notification for its reference, or `reconciler track ccv ID --ref REF`, "
            "settles it; `reconciler ccv resolve --ref REF --not-sent` once you know "
            "CCV has none"
        )
    document = {"error": error, "state": state, "external_reference": ref}
    return dataclasses.replace(json_result(status, document, ref, state, own=lost), lost=lost)
