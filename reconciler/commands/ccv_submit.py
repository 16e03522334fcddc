"""`reconciler ccv submit FILE|-`: the submit flow for scripts; prints the new order's id.

With no daemon running the command holds the store itself. A running daemon owns the store
(one writer), so the command then goes through the daemon's integration API, which must be
configured. Exit 0 submitted, 65 refused (bad body, CCV's 4xx, reference submitted already),
75 try later or settle by hand (CCV's 5xx, 408, 429 or 409, not reached, answer lost, a 2xx
whose body was not read, a 2xx naming no usable order id or one followed under another
reference).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import cast
from urllib.parse import quote

import aiohttp

from ..config import ApiConfig, CCVConfig, Config
from ..config.names import configured_account
from ..exits import EX_CONFIG, EX_DATAERR, EX_OK, EX_TEMPFAIL
from ..logs import fields, say
from ..redact import Secrets, config_secrets, redact
from ..store.submissions import State
from ..writes.ccv_http import masked_answer
from ..writes.daemon_api import (
    authorization,
    daemon_stopping,
    held_elsewhere,
    nobody_listens,
    refused,
    stopping_said,
    token_refused,
)
from ..writes.submit_body import BadSubmission, new_reference
from ..writes.submit_outcome import (
    MADE_ADVICE,
    NOT_SENT_REFUSED_HEADER,
    ORDER_ID_HEADER,
    OWN_HEADER,
    REFERENCE_HEADER,
    RELINK_HEADER,
    STATE_HEADER,
    UNTRACKABLE_HEADER,
    Result,
    own_from_header,
    ref_option,
)
from ..writes.submit_refused import also_carried_count, also_carried_from, say_also_carried
from .accounts import account_option

log = logging.getLogger("reconciler.writes.submit")

DELIVER_TIMEOUT_S = 10.0
# The least a submit through the daemon waits for its answer (see `api_wait_s`).
API_TIMEOUT_S = 120.0
ERROR_BODY_CHARS = 500


def api_wait_s(account: CCVConfig) -> float:
    """How long a submit through the daemon waits for its answer: its turn behind the account's
    requests in flight and those ahead of it (each attempt at most `timeout`), its own single
    attempt, and the recording; at least API_TIMEOUT_S. Given up earlier, the daemon would
    still send it and record CCV's answer while the caller was told nothing."""
    return max(API_TIMEOUT_S, 3 * account.timeout_s + 30.0)


def exit_code(status: int) -> int:
    """Map the HTTP status of a submit's answer to the command's exit code."""
    if 200 <= status < 300:
        return EX_OK
    if status in (401, 403):
        return EX_CONFIG
    # 408 and 429 (too many requests) say "not now", not "this body is wrong".
    return EX_DATAERR if 400 <= status < 500 and status not in (408, 429) else EX_TEMPFAIL


def _report(answer: Result, secrets: Secrets, account: str) -> int:
    """Say what became of the submit; return the exit code. `account`: the ` --account NAME`
    the commands it advises need (`account_option`)."""
    status, reference = answer.status, answer.reference
    code = exit_code(status)
    location = answer.headers.get("Location") or None  # an empty one points nowhere
    # Where it would be refused (CCV said it made the order, or notified the reference), a
    # person's word that CCV has none is not advised: the Submitter read it from the
    # submission as stored (`store/not_sent.refusal`), as `ccv resolve --not-sent` will.
    made = answer.not_sent_refused is not None
    ref = ref_option(reference)
    track = f"`reconciler track ccv ID {ref}{' --relink' if answer.relink else ''}{account}`"
    where = f" (Location: {redact(location, secrets)})" if location else ""
    if code == EX_DATAERR and answer.state == "uncertain" and answer.own is None:
        # CCV's own 4xx that left the submit uncertain (its 409 "already submitted": CCV may
        # hold an order of the reference), not a refusal: settled by a person, as a 5xx is.
        code = EX_TEMPFAIL
    if code == EX_OK and answer.own is not None and not answer.order_id:
        # Its body broke or was too large: unread, it may have named the order. Said as a lost
        # answer is (look at CCV first), not as one naming no order.
        code = EX_TEMPFAIL
    if code == EX_OK:
        if answer.order_id:
            print(answer.order_id)
            carried = answer.also_carried_by
            say_also_carried(reference, answer.order_id, carried, answer.also_carried_count)
            return code
        # The order may exist but cannot be followed yet: the submission is uncertain, as when
        # the answer is lost, and a script must not take an empty id for success.
        # No usable id, or one of an order followed under another reference: the events'
        # `reason` (`reconciler events --type order.submit_uncertain`) says which.
        # CCV's notifications name no order: only a person who found it can settle it; a
        # `201 Created`'s Location may be where to look. A 2xx naming no order (an HTML page)
        # proves nothing: CCV may have none, and a person's word settles that too.
        if answer.untrackable:
            # Nothing `track` takes: a person's word that CCV made it is what closes it.
            say(
                f"reconciler: submitted (HTTP {status}{where}): CCV's answer names an order id "
                f"field reconciler cannot use; external reference {reference} is "
                f"uncertain: {MADE_ADVICE.format(ref + account)}",
                logging.WARNING,
            )
            return EX_TEMPFAIL
        not_sent = (
            ""
            if made
            else f", or, when the answer named no order and CCV has none, `reconciler ccv "
            f"resolve {ref} --not-sent{account}` (then submit it again)"
        )
        say(
            f"reconciler: submitted (HTTP {status}{where}) but no order is followed for it "
            "(CCV's answer names no usable order id, or one followed under another reference); "
            f"external reference {reference} is uncertain until you find its order at CCV "
            f"and run {track}{not_sent}",
            logging.WARNING,
        )
        return EX_TEMPFAIL
    level = logging.WARNING if code == EX_TEMPFAIL else logging.ERROR  # worth trying again, or not
    if answer.own is not None:
        # Percent-encoded, the header may carry a line end (`%0D%0A`) a reference or CCV's
        # failure held: one line, as the body.
        own = one_line(answer.own, secrets)
        # With CCV's Location, where a 303's "made, see there" points, also when its body broke.
        say(f"reconciler: {'error: ' if level == logging.ERROR else ''}{own}{where}", level)
    else:
        # CCV's error answer may echo what it was sent (the key, the signed URL) and may be a
        # page of any size: one masked, printable, bounded line.
        # A JSON answer may echo one in an escape (`\\u002B`): masked as the API passes it back.
        text = one_line(masked_answer(answer.body, secrets)[0].decode("utf-8", "replace"), secrets)
        say(f"reconciler: submit answered HTTP {status}{where}: {text or '(no body)'}", level)
    if answer.state == "uncertain" and answer.untrackable:
        # CCV's 2xx named an id `track` cannot take (said again by a `409` of a second submit
        # of the reference): only a person's word closes it.
        say(
            f"reconciler: CCV's answer to the submit of external reference {reference} named "
            "an order id field reconciler cannot use: it is uncertain and is not sent again; "
            f"{MADE_ADVICE.format(ref + account)}",
            logging.WARNING,
        )
    elif answer.state == "uncertain":
        # A 3xx, a 5xx, a lost answer or a 2xx whose body was not read: CCV may have made the
        # order, and the same reference is refused from now on (409); a new one would make a
        # second order if CCV has it.
        or_not_sent = (
            ""
            if made
            else f", or, sure that CCV has none, `reconciler ccv resolve {ref} "
            f"--not-sent{account}` (then submit it again)"
        )
        say(
            f"reconciler: CCV may have made the order: external reference {reference} is "
            f"uncertain and is not sent again; find the order at CCV and run {track}"
            f"{or_not_sent}",
            logging.WARNING,
        )
    elif answer.state == "resolved" and code == EX_TEMPFAIL:
        # Settled while it waited for CCV's answer (a 409's is said by its own words).
        say(
            f"reconciler: a CCV notification for external reference {reference} came while "
            "its submit waited for CCV's answer: CCV has the order, and the submit is resolved "
            f"(not sent again); its order is followed once you find it at CCV and run {track}",
            logging.WARNING,
        )
    return code


def one_line(text: str, secrets: Secrets) -> str:
    """Return `text` masked, printable, on one line and bounded."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return redact(" ".join(text.split()), secrets, limit=ERROR_BODY_CHARS)


async def submit_command(config: Config, account: str, document: dict[str, object]) -> int:
    """Submit one order body, locally or through the running daemon's API."""
    from ..runtime import writer_unless_held

    secrets = config_secrets(config)
    async with writer_unless_held(config) as rt:
        if rt is not None:
            submitter = rt.submitter()
            try:
                result = await submitter.submit(account, document)
            except BadSubmission as exc:
                say(f"reconciler: error: {exc}")
                return EX_CONFIG if exc.status == 409 else EX_DATAERR
            await rt.delivery.drain(DELIVER_TIMEOUT_S)
            return _report(result, secrets, account_option(config, "ccv", account))
    if config.api is None:
        raise held_elsewhere("nothing was sent")
    wait_s = api_wait_s(configured_account(config.ccv, account))
    return await _through_api(config, config.api, account, document, secrets, wait_s)


async def _through_api(
    config: Config,
    api: ApiConfig,
    account: str,
    document: dict[str, object],
    secrets: Secrets,
    wait_s: float,
) -> int:
    url = api.url("/api/v1/ccv/orders")
    given = document.get("externalReference") is not None
    if not given:
        # Made here, not by the daemon, so that an answer that does not come can name it, and
        # named before it goes: a command killed meanwhile has said which reference to look up.
        document = {**document, "externalReference": new_reference()}
        log.info(
            "ccv.submit_sending",
            extra=fields(account=account, external_reference=document["externalReference"]),
        )
    sent_ref = document.get("externalReference")
    option = account_option(config, "ccv", account)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait_s)) as s:
        try:
            # CCV's 3xx comes back as it is: followed, it would read as the daemon's answer.
            async with s.post(
                url,
                params={"account": account},
                json=document,
                headers=authorization(api),
                allow_redirects=False,
            ) as resp:
                if token_refused(resp.status, resp.headers):
                    return refused(config.file)
                status, body, headers = resp.status, await resp.read(), resp.headers
        except aiohttp.ClientConnectorError:
            return nobody_listens(api)  # another command (a catch-up, say) holds the store
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # 3.10: not TimeoutError
            return _no_answer(exc, wait_s, sent_ref, option, given=given)
    header = headers.get(REFERENCE_HEADER)
    # The reference it sent, where it has one: an older daemon's header is not percent-encoded
    # (`50%25-off` would read as `50%-off`).
    given_ref = sent_ref if isinstance(sent_ref, str) else None
    reference = None if header is None else given_ref or own_from_header(header)
    # A 4xx naming none is the API's own refusal, nothing recorded: said so, of the reference
    # it sent (one made here was logged as sending), not a bare null.
    by_daemon = reference is None and 400 <= status < 500
    said = {"refused_by_daemon": True} if by_daemon else {}
    log.info(
        "ccv.submit_via_api",
        extra=fields(
            account=account, status=status, external_reference=reference or given_ref, **said
        ),
    )
    if reference is None:
        # Every answer about a submission names its reference: a 4xx without one is the API's
        # own refusal (its body limit, a bad body), before anything was recorded or sent. Any
        # other answer without one (a 5xx of the daemon's) says nothing of what CCV got.
        if by_daemon:
            return _api_refused(status, body, api, secrets)
        if daemon_stopping(status, _json_or_none(body)):
            return stopping_said()
        why = RuntimeError(f"its HTTP {status}")
        return _no_answer(why, wait_s, sent_ref, option, given=given)
    own = headers.get(OWN_HEADER)
    not_sent_refused = headers.get(NOT_SENT_REFUSED_HEADER)
    answer = Result(
        status,
        body,
        headers.get("Content-Type", ""),
        reference,
        cast("State | None", headers.get(STATE_HEADER)),
        headers.get(ORDER_ID_HEADER),
        {"Location": headers["Location"]} if "Location" in headers else {},
        None if own is None else own_from_header(own),
        None if not_sent_refused is None else own_from_header(not_sent_refused),
        headers.get(RELINK_HEADER) == "true",
        untrackable=headers.get(UNTRACKABLE_HEADER) == "true",
        also_carried_by=also_carried_from(headers),
        also_carried_count=also_carried_count(headers),
    )
    return _report(answer, secrets, option)


def _no_answer(
    exc: BaseException, wait_s: float, reference: object, account: str, *, given: bool
) -> int:
    """Say that the daemon's answer did not come: whether CCV got the order is not known, and
    the daemon, which records CCV's answer, never sends it again. Return the exit code."""
    if isinstance(exc, asyncio.TimeoutError):
        why = f"within {wait_s:.0f} s"
    elif isinstance(exc, aiohttp.ClientError):
        why = f"({type(exc).__name__})"
    else:  # the daemon's own failure, its words
        why = f"({exc})"
    again = (
        ""
        if given
        else "; the file has no externalReference: submitted again, it would get a new one "
        "and CCV a second order"
    )
    ref = ref_option(reference) if isinstance(reference, str) else f"--ref {reference}"
    path = quote(str(reference), safe="")
    say(
        f"reconciler: the daemon's API did not answer {why}: whether CCV has the order of "
        f"external reference {reference} is not known yet (the daemon records CCV's answer "
        "and never sends it again). Before submitting again, look at `reconciler status` "
        f"(SENDING, or uncertain) or `GET /api/v1/ccv/submissions/{path}`, and once you "
        f"found its order at CCV, `reconciler track ccv ID {ref}{account}`{again}",
        logging.WARNING,
    )
    return EX_TEMPFAIL


def _json_or_none(body: bytes) -> object:
    """Return the JSON a body holds, or None."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def _api_refused(status: int, body: bytes, api: ApiConfig, secrets: Secrets) -> int:
    """Say why the daemon's API refused the submit (nothing recorded or sent); return the exit
    code."""
    try:
        error = json.loads(body)
        where = f"{error['field']}: " if error.get("field") else ""
        text = f"{where}{error['error']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        text = body.decode(errors="replace")
    # The body echoes what it was sent: its error text as much as a page that is not JSON.
    text = one_line(text, secrets)
    if status == 413:
        text += (
            f" (the daemon's [api] max_body, {api.max_body_bytes} bytes, bounds a submit "
            "through the daemon; nothing was sent)"
        )
    say(f"reconciler: error: the daemon's API refused the submit (HTTP {status}): {text}")
    return exit_code(status)
