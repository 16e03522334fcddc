"""CCV's answer to a submit, and the submission closed with it.

A 2xx naming an order reconciler can follow: `succeeded`, the order tracked in the same
transaction. A 4xx but 409: `failed`, nothing made. Anything that leaves open whether CCV made
the order, or which one it made (a 3xx or 5xx, a 409 "already submitted", a lost answer, a 2xx
whose body was not read, naming no usable order id or an order followed under another
reference): `uncertain`, never sent again, one `order.submit_uncertain`; a person settles it by
tracking the order with the reference (a lost answer, a 3xx, a 409 or a 5xx also CCV's first
notification for the reference), or, sure that CCV has none, with `ccv resolve --not-sent` (not
where CCV said it has the order: `store/not_sent.refusal`).
"""

from __future__ import annotations

import json
import logging
import shlex
import string
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote

from reconciler.logs import fields
from reconciler.redact import (
    MASK,
    MIN_BODY_FRAGMENT,
    SecretForms,
    holds_secret,
    mask,
    redact,
    text_forms,
)
from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.store.references import log_carried
from reconciler.store.submitted import succeed
from reconciler.writes.ccv_http import Answer
from reconciler.writes.pricing_values import Problem
from reconciler.writes.submit_ids import (
    location_order_id,
    named_order,
    names_an_order,
    order_id_from,
)
from reconciler.writes.submit_uncertain import make_uncertain

log = logging.getLogger("reconciler.writes.submit")

CONFLICT = 409  # CCV's "already submitted": uncertain, not refused (`close`)

# The reference, percent-encoded as OWN_HEADER (`own_header`): a header carries no letter
# beyond ASCII but as raw bytes a client may read as latin-1.
REFERENCE_HEADER = "Reconciler-External-Reference"
ORDER_ID_HEADER = "Reconciler-Order-Id"
# Where the submission of the reference stands after this answer (the API's callers, `ccv
# submit` through the daemon among them, cannot tell CCV's 3xx or 5xx from reconciler's own).
STATE_HEADER = "Reconciler-Submission-State"
# reconciler's own answer (`Result.own`), percent-encoded (a header holds no line end, and a
# reference it quotes may hold any letter): `ccv submit` through the daemon says it, not an
# HTTP status CCV never gave.
OWN_HEADER = "Reconciler-Submission-Own-Answer"
# Why `ccv resolve --not-sent` would be refused for the reference now (`store/not_sent.refusal`
# of the submission as stored after this answer), percent-encoded as OWN_HEADER; absent where it
# would close it. `ccv submit` through the daemon advises it, or not, by this.
NOT_SENT_REFUSED_HEADER = "Reconciler-Submission-Not-Sent-Refused"
# The `reason` of a 2xx whose body broke or was too large: it may have named its order,
# unread (not `no_order_id`); like a lost answer, it proves nothing either way.
ANSWER_UNREAD = "answer_unread"
# `true` where `track ccv ID --ref REF` needs `--relink` to settle it (`Result.relink`).
RELINK_HEADER = "Reconciler-Submission-Track-Relink"
# `true` where only `ccv resolve --made` settles it (`Result.untrackable`).
UNTRACKABLE_HEADER = "Reconciler-Submission-Untrackable"
# What closes a submission CCV made an order of that `track` cannot take (`unusable_order_id`).
# A 2xx naming an id field proves nothing where that field is no order's (`{"items": [{"id":
# ...}]}`): with no order at CCV, the word closes it too, and the order goes under a new reference.
MADE_ADVICE = (
    "once you found the order at CCV, `reconciler ccv resolve {} --made` closes it (if CCV has "
    "no order of it, close it so too and submit the order again under a new reference)"
)


def own_header(own: str) -> str:
    """Return `own` as OWN_HEADER's value (`own_from_header` reads it back)."""
    return quote(own, safe=" " + string.punctuation.replace("%", ""))


def own_from_header(value: str) -> str:
    """Return the own answer an OWN_HEADER value carries."""
    return unquote(value)


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
    # reconciler's own answer, not CCV's: what happened, for a command line in this process
    # to say in place of an HTTP status CCV never gave (a timeout's 504 is reconciler's word)
    own: str | None = None
    # Why `ccv resolve --not-sent` is refused for the reference as stored after this answer
    # (`store/not_sent.refusal`; set by the Submitter for an uncertain one); None: it closes it
    not_sent_refused: str | None = None
    # Whether `track ccv ID --ref REF` needs `--relink` to settle it: CCV named an order
    # followed under another reference (`track` refuses to move one without it)
    relink: bool = False
    # How CCV's answer was lost, where this is reconciler's answer in its place (its body
    # says where the submission stands: `submit.lost_answer`)
    lost: str | None = None
    # Whether CCV named its order under an id `track` cannot take (uncertain,
    # `unusable_order_id`): only `ccv resolve --made` settles it, not `track ccv ID`
    untrackable: bool = False
    # The warnings of the check of its cart's prices; None: the cart carries none to check
    pricing: Sequence[Problem] | None = None
    # The other followed orders that carry the reference of the order it made (`also_carried_by`)
    also_carried_by: Sequence[str] = ()
    # How many there are, where `also_carried_by` is cut (read from the daemon's answer); 0: all
    also_carried_count: int = 0


def ref_option(reference: str) -> str:
    """`--ref REF` for a command the output tells a person to run: quoted for a shell, and
    joined by `=` when REF begins with `-` (else read as an option: `--ref=--not-sent`)."""
    quoted = shlex.quote(reference)
    return f"--ref={quoted}" if reference.startswith("-") else f"--ref {quoted}"


def json_result(
    status: int,
    document: Mapping[str, object],
    reference: str,
    state: subs.State | None,
    *,
    own: str | None = None,
) -> Result:
    """reconciler's own answer (409, 502, 503, 504), with the reference header as on CCV's;
    `own`: what happened, when the document's `error` says more than that."""
    headers = {REFERENCE_HEADER: own_header(reference)}
    said = own if own is not None else str(document["error"])
    body = json.dumps(document).encode()
    return Result(status, body, "application/json", reference, state, None, headers, said)


@dataclass(frozen=True, slots=True)
class Closing:
    """What closing a submission with CCV's answer needs besides the answer."""

    store: Store
    order_id_fields: Sequence[str]
    now: float
    on_commit: Callable[[], None]
    # The account's API key and the config's other secrets: never taken for an id.
    key_forms: SecretForms | None = None
    secrets: Sequence[str] = ()  # the config's: masked in CCV's `Location`, as in its header


async def close(c: Closing, sub_id: int, account: str, ref: str, answer: Answer) -> Result:
    """Close a submission with CCV's answer and return what its caller gets: CCV's answer as
    it came, with the reference header (and the order id's on success)."""
    status, headers = answer.status, {REFERENCE_HEADER: own_header(ref)}
    headers.update(answer.passed_headers())
    # Kept (the submission, its event, the log line) masked, as the header is passed on.
    location = None
    if answer.location is not None:
        location = mask(answer.location, text_forms(c.secrets), at_end=MIN_BODY_FRAGMENT)
    passed = Result(
        status, answer.body, answer.content_type, ref, "uncertain", None, headers, answer.own
    )

    async def passed_uncertain(reason: str, named: str | None = None) -> Result:
        """CCV's answer passed on, the submission made uncertain (or found settled); `named`:
        the order the answer named, kept with it."""
        state = await uncertain(c, account, sub_id, ref, reason, status, location, named)
        return replace(passed, state=state)

    def order_named() -> str | None:
        body = answer.came if answer.own is not None else answer.body
        success = 200 <= status < 300 or status == 303  # "made, see there"
        return named_order(body, location, c.order_id_fields, c.key_forms, success=success)

    if 200 <= status < 300 and answer.own is not None:
        # Its body broke or was too large: it may have named the order, so it is an answer
        # not read, not one naming none; a person looks at CCV first, as for a lost answer. One
        # that came whole before its framing broke may name the order: kept (`order_named`).
        log.warning(
            "ccv.submit_answer_unread",
            extra=fields(
                account=account, external_reference=ref, why=answer.own, location=location
            ),
        )
        return await passed_uncertain(ANSWER_UNREAD, order_named())
    if 200 <= status < 300:
        order_id = order_id_from(answer.body, c.order_id_fields, c.key_forms)
        if order_id is None:
            # CCV made the order, but where its answer keeps the id is not documented: the
            # order would go unfollowed. A person is told (one event), finds the order at CCV
            # and tracks it with the reference.
            # One naming an order under an id reconciler cannot use says CCV made it (no
            # `ccv resolve --not-sent`); one naming none (a gateway's page) proves nothing.
            named = names_an_order(answer.body, c.order_id_fields)
            reason = subs.UNUSABLE_ORDER_ID if named else "no_order_id"
            log.warning(
                "ccv.submit_unusable_order_id" if named else "ccv.submit_no_order_id",
                extra=fields(
                    account=account,
                    external_reference=ref,
                    fields=list(c.order_id_fields),
                    location=location,
                ),
            )
            # A `Location` naming the order keeps its id (one naming none: none kept).
            return await passed_uncertain(reason, None if named else order_named())
        if location is not None:
            _location_differs(c, account, ref, order_id, location)
        followed, others = await succeed(
            c.store,
            sub_id,
            account=account,
            reference=ref,
            order_id=order_id,
            http_status=status,
            now=c.now,
            location=location,
        )
        if followed is not None:
            # Taken for this submit, that order's notifications and events would become this
            # reference's. Left as it is; which order this submit made is for a person to find.
            log.warning(
                "ccv.submit_order_followed_elsewhere",
                extra=fields(
                    account=account,
                    external_reference=ref,
                    order_id=order_id,
                    followed_reference=followed,
                    location=location,
                ),
            )
            reason = (
                f"{subs.FOLLOWED_ELSEWHERE}: CCV answered order {order_id}, followed under "
                f"reference {followed}, not {ref}"
            )
            return await passed_uncertain(reason)
        log.info(
            "ccv.submitted",
            extra=fields(account=account, external_reference=ref, order_id=order_id, status=status),
        )
        # Said as a track of a second carrier says it (references.log_carried).
        log_carried(log, account, [(order_id, ref, others)] if others else [])
        headers[ORDER_ID_HEADER] = order_id
        made = Result(status, answer.body, answer.content_type, ref, "succeeded", order_id, headers)
        return replace(made, also_carried_by=others)
    if not 400 <= status < 500 or status == CONFLICT:
        # CCV's "Server error" may come after the order was made (or from a gateway after
        # CCV got it), and a 3xx to a POST is the usual "made, see there" (303 See Other):
        # as with a lost answer, never sent again; a person settles it. A 409 ("already
        # submitted", undocumented) says CCV may hold an order of the reference that nothing
        # follows (an earlier submit's): freed, the reference would be sent again. The order
        # it names (`{"orderId": ...}`, a Location) is kept: CCV has that one.
        return await passed_uncertain(f"http_{status}", order_named())
    reason = f"http_{status}"
    failed = await subs.fail(
        c.store,
        sub_id,
        http_status=status,
        reason=reason,
        now=c.now,
        location=location,
        unless_notified=True,
    )
    if failed == "notified":
        return await _contradicted(passed_uncertain, account, ref, reason, status)
    if failed == "closed":
        # Closed elsewhere meanwhile (a writer's recovery made it uncertain): as it stands,
        # with no word of a notification that did not come.
        return await passed_uncertain(reason)
    log.warning(
        "ccv.submit_refused", extra=fields(account=account, external_reference=ref, status=status)
    )
    return Result(
        status, answer.body, answer.content_type, ref, "failed", None, headers, answer.own
    )


async def _contradicted(
    passed_uncertain: Callable[[str], Awaitable[Result]],
    account: str,
    ref: str,
    reason: str,
    status: int,
) -> Result:
    """CCV refused the submit, but a notification for its reference came while its answer was
    on the way: CCV has an order of it (another submit of it, say), which the refusal
    contradicts. Freed, the reference would be submitted again, a second order: kept taken,
    settled by that notification as a lost answer is (`make_uncertain`), with one warning."""
    log.warning(
        "ccv.submit_failed_contradicted",
        extra=fields(account=account, external_reference=ref, status=status, reason=reason),
    )
    result = await passed_uncertain(reason)
    own = (
        f"CCV refused the submit (HTTP {status}), but a CCV notification for external reference "
        f"{ref} came while it waited: CCV has an order of it, and the submit is {result.state} "
        "(the reference is not sent again); find the order at CCV and run "
        f"`reconciler track ccv ID {ref_option(ref)}`"
    )
    return replace(result, own=own)


def _location_differs(c: Closing, account: str, ref: str, order_id: str, location: str) -> None:
    """Warn where CCV's answer names one order in its body and another in its `Location`: one
    of the two is wrong. The body's is taken (it is the answer's own word on what it made)."""
    pointed = location_order_id(location, c.order_id_fields)
    if pointed is None or pointed.casefold() == order_id.casefold():  # a GUID in either case
        return
    # Decoded from the masked Location: a key with a letter percent-encoded that needs none
    # (`Zk7%51pL...`) was not masked there, and is in clear here. Masked as a body's id is
    # checked (`order_id_from`).
    pointed = redact(pointed, c.secrets)
    if holds_secret(pointed, c.key_forms):
        pointed = MASK
    log.warning(
        "ccv.submit_location_differs",
        extra=fields(
            account=account,
            external_reference=ref,
            order_id=order_id,
            location_order_id=pointed,
            location=location,
        ),
    )


async def uncertain(
    c: Closing,
    account: str,
    sub_id: int,
    ref: str,
    reason: str,
    status: int | None = None,
    location: str | None = None,
    order_id: str | None = None,
) -> subs.State:
    """Make a submission uncertain (`make_uncertain`) and tell the caller's `on_commit`: CCV's
    answer was lost, or one it gave cannot be followed (`location`: its masked `Location`;
    `order_id`: the order it named, where it is no success's).
    Return where it stands then: `resolved` when a notification for the reference came while
    it waited for CCV's answer (the caller is told that, not `uncertain`)."""
    settled = await make_uncertain(
        c.store,
        account,
        [(sub_id, ref)],
        reason,
        now=c.now,
        http_status=status,
        location=location,
        order_id=order_id,
    )
    c.on_commit()
    return "resolved" if ref in settled else "uncertain"
