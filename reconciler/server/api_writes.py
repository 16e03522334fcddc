"""The integration API's writes: CCV submit and pricing (forwarded once), where a submission
stands, and CCNow order actions as durable commands."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence

from aiohttp import web

from ..config import ApiConfig
from ..json_text import iso_time
from ..logs import fields
from ..model import InvalidOrderId, Source, normalize_ccnow_id
from ..redact import MIN_BODY_FRAGMENT, mask, redact, text_forms
from ..store import submissions as subs
from ..writes import ccv_http
from ..writes.body_secrets import secret_problems
from ..writes.ccnow_actions import ActionSender, BadAction, command_json, from_document
from ..writes.ccnow_resolve import RESOLVE_ACTIONS, NotResolved, action_word
from ..writes.ccv_http import NotSent, Uncertain, html_page, masked_answer, send_once, sendable
from ..writes.in_flight import Cut, Stopping
from ..writes.pricing import blocking, check_pricing
from ..writes.pricing_values import Problem
from ..writes.submit_advice import not_settled
from ..writes.submit_outcome import (
    NOT_SENT_REFUSED_HEADER,
    OWN_HEADER,
    RELINK_HEADER,
    STATE_HEADER,
    UNTRACKABLE_HEADER,
    own_header,
)
from ..writes.submit_prices import WARNINGS_HEADER, BadPrices, warning_headers
from ..writes.submit_refused import also_carried_headers
from .api_orders import CURSOR
from .api_requests import (
    ApiDeps,
    BadRequest,
    account_given,
    account_named,
    json_body,
    reference_named,
    unconfigured_with_writes,
    unknown_field,
)

log = logging.getLogger("reconciler.api")

# The size past which CCV's answer is masked (`masked_answer`) in a worker thread.
THREADED_ANSWER_BYTES = 64 * 1024

PRICING_PATH = "/api/ordercompletion/reseller/orderconfigurator/SetShoppingCardPricingDetails"


class Writes:
    """The handlers of /api/v1/ccv/... and /api/v1/ccnow/...; one instance per app."""

    def __init__(self, config: ApiConfig, deps: ApiDeps) -> None:
        self.config = config
        self.deps = deps

    def account(self, source: Source, raw: object) -> str:
        """Return the account of `source` that `raw` names."""
        return account_named(self.deps.accounts.get(source, ()), source, raw)

    async def _body(self, request: web.Request) -> dict[str, object]:
        """Return the request's JSON object (`json_body`), within the API's bounds."""
        return await json_body(
            request, self.config.max_body_bytes, timeout_s=self.deps.body_timeout_s
        )

    async def submit(self, request: web.Request) -> web.Response:
        """POST /api/v1/ccv/orders?account=A: submit through reconciler."""
        account = self.account("ccv", request.query.get("account"))
        doc = await self._body(request)
        try:
            result = await self.deps.submitter.submit(account, doc)
        except BadPrices as exc:
            log.info(
                "api.submit_prices_refused",
                extra=fields(account=account, problems=sum(p.blocking for p in exc.problems)),
            )
            return self._problems(exc.message, exc.problems)
        headers = dict(result.headers)
        if result.pricing is not None:
            # Its cart's warnings, as a refusal gives its problems.
            headers.update(warning_headers(result.pricing, text_forms(self.deps.secrets)))
        if result.state is not None:
            headers[STATE_HEADER] = result.state
        if result.own is not None:
            # Masked as the body is: it may quote what CCV's failure said.
            headers[OWN_HEADER] = own_header(redact(result.own, self.deps.secrets))
        if result.not_sent_refused is not None:
            # Masked: it names CCV's Location.
            refused = redact(result.not_sent_refused, self.deps.secrets)
            headers[NOT_SENT_REFUSED_HEADER] = own_header(refused)
        if result.relink:
            headers[RELINK_HEADER] = "true"
        if result.untrackable:
            headers[UNTRACKABLE_HEADER] = "true"
        if result.also_carried_by:
            headers.update(also_carried_headers(result.also_carried_by))
        return await self._passed_back(result.status, result.body, result.content_type, headers)

    async def submission(self, request: web.Request) -> web.Response:
        """GET /api/v1/ccv/submissions/{reference}?account=A: where a submit stands."""
        account = self.account("ccv", request.query.get("account"))
        reference = reference_named(self.deps, request.match_info["reference"], "reference")
        found = await subs.find(self.deps.reader, account, reference)
        if found is None:
            raise BadRequest(404, "nothing was submitted with this reference", "reference")
        return web.json_response(_submission_json(found))

    async def ccv_resolve(self, request: web.Request) -> web.Response:
        """POST /api/v1/ccv/submissions/resolve `{"external_reference", "sent": false,
        "account"?}`: close an uncertain submit CCV never got (`ccv resolve --not-sent`); with
        `"made": true` instead of `sent`, one CCV made an order of (`ccv resolve --made`)."""
        doc = await self._body(request)
        for name in doc:
            if name not in ("external_reference", "sent", "made", "account"):
                raise unknown_field(name)
        named = account_given(request, doc)
        # An account the config no longer names may still hold uncertain submits.
        account = await unconfigured_with_writes(self.deps, "ccv", named)
        if account is None:
            account = self.account("ccv", named)
        if "external_reference" not in doc:
            raise BadRequest(422, "required, an external reference", "external_reference")
        # As stored, as `ccv resolve --ref`.
        ref = reference_named(self.deps, doc["external_reference"], "external_reference")
        made = doc.get("made") is True and "sent" not in doc
        if not made and (doc.get("sent") is not False or "made" in doc):
            # That CCV has it is said by tracking its order with the reference (POST /orders),
            # or, where its id cannot be tracked, by `made`.
            word = "made" if "made" in doc else "sent"
            raise BadRequest(422, 'one of "sent": false or "made": true is taken here', word)
        settled, found = await self.deps.submitter.settle(
            account, ref, "made" if made else "not_sent"
        )
        if not settled:
            status = 404 if found is None or found.state != "uncertain" else 409
            raise BadRequest(status, not_settled(ref, found), "external_reference")
        assert found is not None  # settled: the submission as it is now
        return web.json_response(_submission_json(found))

    def sender(self) -> ActionSender:
        """Return the CCNow action sender; 422 naming `source` when no CCNow account is
        configured, as every endpoint answers a source without accounts (`account_named`)."""
        if self.deps.actions is None or not self.deps.accounts.get("ccnow"):
            raise BadRequest(422, "no ccnow account is configured", "source")
        return self.deps.actions

    async def ccnow_actions(self, request: web.Request) -> web.Response:
        """POST /api/v1/ccnow/actions: record CCNow order actions and send them at once."""
        sender = self.sender()
        doc = await self._body(request)
        account = self.account("ccnow", account_given(request, doc))
        try:
            new = from_document(sender.accounts[account], doc, self.deps.secrets_search)
            taken = await sender.take(new)
        except BadAction as exc:
            raise BadRequest(422, str(exc), exc.field) from None
        commands = taken.to_json()
        answer: dict[str, object] = {"commands": commands, "sent": taken.sent}
        if taken.cut:
            # The stop cut a post off before CCNow answered: the commands as they stand (each
            # id, `sending`), no Retry-After (the next start settles them, none is re-sent).
            answer["error"] = "stopping"
        if "order_id" in doc:
            # DESIGN.md's one-order request: the command's state is the answer itself.
            answer = {**commands[0], **answer}
        return web.json_response(answer, status=503 if taken.cut else 202)

    async def ccnow_resolve(self, request: web.Request) -> web.Response:
        """POST /api/v1/ccnow/actions/resolve `{"order_id", "sent", "account"?, "action"?}`:
        settle an order's uncertain action by a person's word (`ccnow resolve` while the daemon
        runs)."""
        doc = await self._body(request)
        for name in doc:
            if name not in ("order_id", "sent", "account", "action"):
                raise unknown_field(name)
        named = account_given(request, doc)
        # An account the config no longer names may still hold uncertain actions.
        sender = self.deps.actions
        account = await unconfigured_with_writes(self.deps, "ccnow", named)
        if account is None or sender is None:
            sender = self.sender()
            account = self.account("ccnow", named)
        raw, sent = doc.get("order_id"), doc.get("sent")
        if not isinstance(raw, str):
            raise BadRequest(422, "order_id: required, a CCNow order id", "order_id")
        self.deps.refuse_secret(raw, "order_id")
        try:
            order_id = normalize_ccnow_id(raw)
        except InvalidOrderId as exc:
            raise BadRequest(422, f"order_id: {exc}", "order_id") from None
        if not isinstance(sent, bool):
            raise BadRequest(422, "sent: required, true (CCNow has it) or false", "sent")
        action = doc.get("action")
        if action is not None and (not isinstance(action, str) or action not in RESOLVE_ACTIONS):
            words = ", ".join(RESOLVE_ACTIONS)
            raise BadRequest(422, f"action: one of {words}, or none", "action")
        stored = None if action is None else RESOLVE_ACTIONS[action]
        try:
            found = await sender.resolve(account, order_id, sent=sent, action=stored)
        except NotResolved as exc:
            raise _not_resolved(exc) from None
        resolved = await sender.commands([c.id for c in found if c.state != "sending"])
        # Being sent, their withdrawal recorded: withdrawn unless CCNow's answer settles them.
        sending = [
            {"id": c.id, "action": action_word(c.action)} for c in found if c.state == "sending"
        ]
        return web.json_response(
            {"commands": [command_json(c) for c in resolved], "sending": sending}
        )

    async def ccnow_action(self, request: web.Request) -> web.Response:
        """GET /api/v1/ccnow/actions/{id}: where one command stands."""
        raw = request.match_info["id"]
        if not CURSOR.fullmatch(raw):
            raise BadRequest(422, "not a command id", "id")
        sender = self.sender()
        found = await sender.command(int(raw))
        if found is None:
            raise BadRequest(404, "no command with this id", "id")
        doubted = found.id in await sender.unconfirmed([found])
        return web.json_response({**command_json(found), "unconfirmed": doubted})

    async def pricing(self, request: web.Request) -> web.Response:
        """PATCH /api/v1/ccv/pricing?account=A: check the prices, then forward them."""
        account = self.account("ccv", request.query.get("account"))
        doc = await self._body(request)
        secret = secret_problems(doc, self.deps.secrets_search)  # first, as in a submit's body
        problems = [*secret, *check_pricing(doc)]
        if blocking(problems):
            log.info(
                "api.pricing_refused",
                extra=fields(account=account, problems=sum(p.blocking for p in problems)),
            )
            said = "the prices are inconsistent; nothing was sent to CCV"
            return self._problems(secret[0].line() if secret else said, problems)
        cfg = self.deps.submitter.accounts[account]
        warned = {WARNINGS_HEADER: str(len(problems))}
        # strict_json decoded every number as the float it was written as: the numbers checked
        # are the numbers sent, and none is NaN or infinite.
        payload = json.dumps(doc, ensure_ascii=False, allow_nan=False).encode()
        submitter = self.deps.submitter
        try:
            answer = await submitter.in_flight.run(
                send_once(
                    submitter.session,
                    cfg,
                    "PATCH",
                    PRICING_PATH,
                    payload,
                    gate=submitter.gates.of(cfg),
                    halt=submitter.in_flight.halt,
                )
            )
        except Stopping:
            said = "reconciler is stopping; nothing was sent to CCV"
            raise BadRequest(503, said, headers=warned) from None
        except Cut:
            said = "reconciler stopped before CCV answered; setting prices again is safe"
            raise BadRequest(503, said, headers=warned) from None
        except NotSent as exc:
            self._pricing_forwarded(account, None, f"not_sent: {exc}", problems)
            said = "CCV could not be reached; nothing was sent"
            raise BadRequest(502, said, headers=warned) from None
        except Uncertain as exc:
            self._pricing_forwarded(account, None, f"answer_lost: {exc}", problems)
            # Setting prices again is harmless, so the caller may simply repeat it.
            status = 504 if str(exc) == "timeout" else 502
            said = "CCV's answer was lost; the call is safe to repeat"
            raise BadRequest(status, said, headers=warned) from None
        if (kind := html_page(answer, self.deps.secrets)) is not None:
            # Passed back, a gateway's "200" would read as prices set, and CCV invoices by them.
            self._pricing_forwarded(account, answer.status, f"html_page: {kind}", problems)
            said = (
                f"CCV's answer (HTTP {answer.status}) was an HTML page, not CCV's answer but "
                "something else's between reconciler and CCV; the prices may not be set: "
                "setting them again is safe"
            )
            raise BadRequest(502, said, headers=warned)
        if answer.own is not None and 200 <= answer.status < 300:
            # Its body, unread, may have said anything: no word that the prices are set.
            self._pricing_forwarded(account, answer.status, answer.own, problems)
            said = f"{answer.own}; the prices may or may not be set: setting them again is safe"
            raise BadRequest(502, said, headers=warned)
        if (no_key := ccv_http.key_refused(answer, account)) is not None:
            # Not passed back: CCV's 401 would read as this API refusing the caller's token.
            self._pricing_forwarded(account, answer.status, "api_key_refused", problems)
            raise BadRequest(502, no_key, headers=warned, ccv_status=answer.status, account=account)
        self._pricing_forwarded(account, answer.status, answer.own, problems)
        headers = {**warned, **answer.passed_headers()}
        return await self._passed_back(answer.status, answer.body, answer.content_type, headers)

    def _problems(self, error: str, problems: Sequence[Problem]) -> web.Response:
        """Return the 422 of prices that break a blocking rule, listing every problem with the
        config's secrets masked where it quotes what was given (as CCV's answers are)."""
        forms = text_forms(self.deps.secrets)
        shown = [p.masked(forms).to_json() for p in problems]
        return web.json_response({"error": error, "problems": shown}, status=422)

    def _pricing_forwarded(
        self, account: str, status: int | None, reason: str | None, problems: Sequence[Problem]
    ) -> None:
        """Log what became of prices forwarded to CCV: its status, or why none came or could
        not be passed on (`reason`). Never the body: CCV invoices by it, and it may hold what a
        log must not (masked all the same, as CCV's words may echo it)."""
        ok = status is not None and 200 <= status < 300 and reason is None
        said = None if reason is None else redact(reason, self.deps.secrets)
        log.log(
            logging.INFO if ok else logging.WARNING,
            "ccv.pricing_forwarded",
            extra=fields(account=account, status=status, reason=said, warnings=len(problems)),
        )

    async def _passed_back(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str]
    ) -> web.Response:
        """Return CCV's answer as it came, but for a secret it echoed (masked: invariant 4) and
        a header of its that cannot be passed on (left out: aiohttp would fail the whole
        answer, after the submit was recorded)."""
        if not 200 <= status <= 599:
            return _not_passed_on(status, headers)
        forms = text_forms(self.deps.secrets)
        kept: dict[str, str] = {}
        for name, value in headers.items():
            # CCV's own (Location, Retry-After) may carry what it echoed (the key in a query):
            # masked as its body is. Reconciler's own say what its database keeps, masked
            # already where they quote CCV, and are kept short (`store/not_sent`): one left out
            # would say where the submission stands wrongly.
            if not name.startswith("Reconciler-"):
                value = mask(value, forms, at_end=MIN_BODY_FRAGMENT)
                if not sendable(value):
                    continue
            kept[name] = value
        if len(body) > THREADED_ANSWER_BYTES:
            # Its views cost up to some 100 ms a MiB: off the event loop, which other requests
            # and the polls share.
            masked, again = await asyncio.to_thread(masked_answer, body, self.deps.secrets)
        else:
            masked, again = masked_answer(body, self.deps.secrets)
        if again:  # written again as UTF-8 JSON, whatever CCV's charset said
            content_type = "application/json; charset=utf-8"
        response = web.Response(status=status, body=masked, headers=kept)
        content_type = mask(content_type, forms, at_end=MIN_BODY_FRAGMENT)
        sent = content_type if content_type and sendable(content_type) else None
        response.headers["Content-Type"] = sent or "application/octet-stream"
        return response


def _not_passed_on(status: int, headers: Mapping[str, str]) -> web.Response:
    """reconciler's 502 for CCV's status no client takes passed on (a 1xx, a 101 Switching
    Protocols one would wait on for ever, a status past 599), with its own headers (where the
    submission stands) and none of CCV's."""
    own = f"CCV answered HTTP {status}, which cannot be passed on"
    kept = {name: value for name, value in headers.items() if name.startswith("Reconciler-")}
    if STATE_HEADER in kept:
        kept[OWN_HEADER] = own_header(own)
    return web.json_response({"error": own}, status=502, headers=kept)


def _submission_json(found: subs.Submission) -> dict[str, object]:
    """Where a submission stands, as GET /api/v1/ccv/submissions/{reference} shows it."""
    return {
        "account": found.account,
        "external_reference": found.external_reference,
        "state": found.state,
        "order_id": found.order_id,
        "http_status": found.http_status,
        "reason": found.reason,
        "location": found.location,
        "created_at": iso_time(found.created_at),
        "closed_at": None if found.closed_at is None else iso_time(found.closed_at),
    }


def _not_resolved(exc: NotResolved) -> BadRequest:
    """404 when nothing of the action asked (or nothing at all) is uncertain or, with `"sent":
    false` and the action named, queued or being sent (with none named, `queued` lists those a
    withdrawal may name); 409 when the order's uncertain commands are of several actions and
    none was named; `uncertain` lists them (`id`, `action` as `"action"` takes it) for the
    caller to choose."""
    uncertain, queued = (
        [{"id": i, "action": action_word(a)} for i, a in commands]
        for commands in (exc.uncertain, exc.queued)
    )
    listed = {"uncertain": uncertain, "queued": queued}
    words = exc.message(lambda w: f'"action": "{w}"')
    if exc.several:
        return BadRequest(409, words, "action", headers=None, **listed)
    message = words or f"{exc.order_id} has no uncertain action"
    return BadRequest(404, message, "action" if words else "order_id", headers=None, **listed)
