"""What a CCV submit's caller is told where the submission is not settled by CCV's answer:
why a person's word that CCV never got it (`ccv resolve --not-sent`) would settle nothing, what
settles it instead, and the answer to a submit the daemon's stop cut off."""

from __future__ import annotations

import dataclasses
import shlex
from typing import Literal

from reconciler.store import submissions as subs
from reconciler.store.not_sent import refusal
from reconciler.writes.submit_outcome import (
    MADE_ADVICE,
    ORDER_ID_HEADER,
    Result,
    json_result,
    ref_option,
)


@dataclasses.dataclass(slots=True)
class Progress:
    """Where one submit call stands, for the answer to a cut (`cut_off`): the row of its
    reference found then is this call's only where it recorded that one (`sub_id`)."""

    sub_id: int | None = None  # the submission this call recorded
    waiting: bool = False  # for an earlier submit of its reference to end
    # `sending`: out to CCV (or waiting for its turn); `recording`: recording CCV's answer or
    # its loss; `not_sent`: recording that it never went out, though a notification came.
    stage: Literal["sending", "recording", "not_sent"] = "sending"


def cut_off(ref: str, found: subs.Submission | None, progress: Progress) -> Result:
    """The answer to a submit the stop cut off (in_flight.Cut): where it stands as recorded.
    Its own submission `sending`: CCV had not answered (the next start makes it uncertain). No
    Retry-After: CCV may have made the order, and the same request again is no retry to
    invite; the reference is held, and the first notification for it or `track ccv ID --ref
    REF` settles it. Its own in another state: the cut came as the transaction recording its
    outcome ran, which landed (`recorded_when_cut`, `notified_unsent`). None, or another call's
    `failed` (the one it waited for, refused; or an older one, where its own row was withdrawn
    as never sent): the reference is free again, and nothing of this call was recorded or sent.
    Another call's in another state (it was cut while it waited for that one, or as it
    recorded its own): what a submit of a reference already taken is told, the `409`."""
    own = found is not None and found.id == progress.sub_id
    # `failed` first: a refused submit's reference is not taken (the `409` would say it is).
    if found is None or (not own and found.state == "failed"):
        return nothing_sent(ref)
    if not own and (found.state != "sending" or progress.waiting):
        return taken_when_cut(ref, found)
    if found.state != "sending" and progress.stage == "not_sent":
        return notified_unsent(ref, found)
    if found.state != "sending":
        return recorded_when_cut(ref, found)
    own_words = (
        f"reconciler stopped before CCV answered the submit of external reference {ref} "
        f"(it is {found.state}, and is not sent again): CCV may have made the order; the first "
        f"notification for the reference, or `reconciler track ccv ID {ref_option(ref)}`, "
        "settles it"
    )
    return stopping(ref, found, own_words)


def stopping(ref: str, found: subs.Submission, own: str) -> Result:
    """reconciler's `503` `stopping` for a cut submit, with its submission's state."""
    document = {"error": "stopping", "external_reference": ref, "state": found.state}
    return json_result(503, {**document, "detail": own}, ref, found.state, own=own)


def nothing_sent(ref: str) -> Result:
    """The `503` of a submit that recorded nothing and sent nothing (the stop came first, or
    cut it as it waited for an earlier one whose reference is free again, or as its own row,
    never sent, was withdrawn)."""
    error = "reconciler is stopping; nothing was recorded or sent: submit it again"
    own = "stopping before the submit went out; nothing was recorded or sent: submit again"
    return json_result(503, {"error": error, "external_reference": ref}, ref, None, own=own)


def taken_when_cut(ref: str, found: subs.Submission) -> Result:
    """A cut submit that recorded nothing, whose reference another submission holds: settled
    (or CCV has its order), the `409` it would have got without the stop; one still `sending`
    (the earlier one this one waited for, cut as well): neither was answered by CCV, and this
    one was not sent."""
    if found.state != "sending":
        return submitted_already(ref, found)
    own = (
        f"reconciler stopped while the submit waited for an earlier submit of external "
        f"reference {ref}, which CCV had not answered (it is sending): this one was not sent, "
        "and the reference is not sent again; the first notification for it, or "
        f"`reconciler track ccv ID {ref_option(ref)}`, settles the earlier one"
    )
    return stopping(ref, found, own)


def submitted_already(ref: str, old: subs.Submission) -> Result:
    """The `409` of a submit whose reference another submission holds (not sent again)."""
    # The order it made, when known: a run a signal ended after CCV's answer was recorded
    # printed no id, and this one is how to learn it.
    made = f": order {old.order_id}" if old.order_id else ""
    if old.state == "resolved" and not old.order_id:
        # Settled with no order known (a notification after its answer was lost or CCV
        # refused it): CCV has one, which nothing follows yet.
        made = (
            ": CCV has an order of it, under an id reconciler cannot use "
            "(not followed: follow it at CCV)"
            if old.reason == subs.UNUSABLE_ORDER_ID
            else f": CCV has an order of it; find it and run `reconciler track ccv ID "
            f"{ref_option(ref)}`"
        )
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
        own=f"external reference {ref} was submitted already (its submit is "
        f"{old.state}{made}); not sent again",
    )


def notified_unsent(ref: str, found: subs.Submission) -> Result:
    """The `503` of a submit that never went out (the stop, or CCV not reached) but whose
    reference a notification named meanwhile, cut as that was recorded: kept taken, settled
    by the notification (CCV has an order of it: an earlier submit's)."""
    made = f", order {found.order_id}" if found.order_id else ""
    own = (
        f"reconciler stopped before the submit of external reference {ref} went out (nothing "
        f"was sent), but a CCV notification for the reference came meanwhile: CCV has an order "
        f"of it, and the submit is {found.state}{made} (not sent again); find the order at CCV "
        f"and run `reconciler track ccv ID {ref_option(ref)}`"
    )
    return stopping(ref, found, own)


def recorded_when_cut(ref: str, found: subs.Submission) -> Result:
    """The `503` of a submit the stop cut off while the transaction recording its outcome (CCV's
    answer, or its loss) ran: that one finished whole (a COMMIT once sent lands, marked
    `store.after_commit`; a one-hand-off transaction runs whole on the database's thread), and
    the caller learns the submission as stored (its state, the order it made), not that CCV
    had not answered. Still reconciler's `stopping` answer: CCV's own was not passed on."""
    state, order_id = found.state, found.order_id
    made = f", order {order_id}" if order_id else ""
    # A refused one's reference is free again (`failed`): any other is never sent again.
    again = "" if state == "failed" else " (not sent again)"
    own = (
        f"reconciler stopped as it recorded the outcome of the submit of external reference "
        f"{ref}: it is {state}{made}{again}"
    )
    document = {
        "error": "stopping",
        "external_reference": ref,
        "state": state,
        "order_id": order_id,
        "detail": own,
    }
    result = json_result(503, document, ref, state, own=own)
    if state != "succeeded" or order_id is None:
        return result
    # The order it made, in the header a 2xx passed on carries: the caller learns it there too.
    headers = {**result.headers, ORDER_ID_HEADER: order_id}
    return dataclasses.replace(result, order_id=order_id, headers=headers)


def not_sent_refused(reference: str, found: subs.Submission | None) -> str | None:
    """Why `ccv resolve --not-sent` would settle nothing for a reference now; None: it would."""
    if found is not None and found.state == "uncertain" and refusal(found) is None:
        return None
    return not_settled(reference, found)


def not_settled(reference: str, found: subs.Submission | None) -> str:
    """Why `ccv resolve --not-sent` settled nothing for a reference."""
    if found is None:
        return f"nothing was submitted with external reference {reference}"
    why = refusal(found) if found.state == "uncertain" else None
    if why is not None and subs.untrackable(found):
        # Its id cannot be tracked: nothing but a person's word closes it.
        return f"{why}; its id cannot be tracked: {MADE_ADVICE.format(ref_option(reference))}"
    if why is not None:
        # CCV said it has the order; which one this submit made is for a person to find,
        # unless its answer named it.
        if found.order_id is not None:
            named = f"`reconciler track ccv {shlex.quote(found.order_id)} {track_options(found)}`"
            return f"{why}; once you checked it at CCV, {named} settles it"
        return f"{why}; find it at CCV and run `reconciler track ccv ID {track_options(found)}`"
    return f"the submit of external reference {reference} is {found.state}, not uncertain"


def track_options(found: subs.Submission) -> str:
    """`--ref REF` for `track ccv ID` to settle an uncertain submission, with `--relink` where
    CCV named an order followed under another reference (else `track` refuses to move it)."""
    relink = " --relink" if followed_elsewhere(found) else ""
    return ref_option(found.external_reference) + relink


def followed_elsewhere(found: subs.Submission) -> bool:
    return found.state == "uncertain" and (found.reason or "").startswith(subs.FOLLOWED_ELSEWHERE)
