"""What a CCV submit's caller is told where the submission is not settled by CCV's answer:
why a person's word that CCV never got it (`ccv resolve --not-sent`) would settle nothing, what
settles it instead, and the answer to a submit the daemon's stop cut off."""

from __future__ import annotations

import dataclasses
import shlex

from reconciler.store import submissions as subs
from reconciler.store.not_sent import refusal
from reconciler.writes.submit_outcome import (
    MADE_ADVICE,
    ORDER_ID_HEADER,
    Result,
    json_result,
    ref_option,
)


def cut_off(ref: str, found: subs.Submission | None) -> Result:
    """The `503` of a submit the stop cut off (in_flight.Cut): the reference and the
    submission's state as recorded. `sending`: CCV had not answered (the next start makes it
    uncertain). No Retry-After: CCV may have made the order, and the same request again is no
    retry to invite; the reference is held, and the first notification for it or `track ccv
    ID --ref REF` settles it. Another state: the cut came as the transaction recording its
    outcome ran, which landed (`recorded_when_cut`)."""
    if found is not None and found.state != "sending":
        return recorded_when_cut(ref, found)
    state = None if found is None else found.state
    own = (
        f"reconciler stopped before CCV answered the submit of external reference {ref} "
        f"(it is {state}, and is not sent again): CCV may have made the order; the first "
        f"notification for the reference, or `reconciler track ccv ID {ref_option(ref)}`, "
        "settles it"
    )
    document = {"error": "stopping", "external_reference": ref, "state": state, "detail": own}
    return json_result(503, document, ref, state, own=own)


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
