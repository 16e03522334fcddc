"""A CCV submit and the other followed orders that carry its reference.

A reference is meant to name one followed order (README, "CCV submit"): a submit of one that
an order tracked with it carries (`track --ref`, `POST /orders`, no submit of this store's)
would make a second order at CCV, which costs as the first did. It is answered as a reference
submitted already is (409, `ccv submit` 65): nothing recorded, nothing sent. Not where CCV
ended every carrier as `Canceled` (store/submissions.py: nothing was paid, and a submit again
is the integrator's way; an earlier submit's order among them); then, and where a track of the
reference came while the submit was sent, its answer names the others (ALSO_CARRIED_HEADER,
the first of them only where many do), as a track's does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence

from reconciler.logs import fields, say
from reconciler.terminal import shown
from reconciler.writes.submit_outcome import Result, json_result, own_from_header, own_header

log = logging.getLogger("reconciler.writes.submit")

# The other followed orders carrying the reference of the order a submit made (a track's
# `also_carried_by`): a JSON array of their ids, percent-encoded as the other `Reconciler-`
# headers (an id may hold a comma); absent when none does. Only the first ids fitting in
# ALSO_CARRIED_MAX characters (at least one: a CCV id is at most 128), so that a client's
# bound on a header line (aiohttp's: 8190 bytes) does not lose the answer of a made order;
# ALSO_CARRIED_COUNT_HEADER says how many there are.
ALSO_CARRIED_HEADER = "Reconciler-Also-Carried-By"
ALSO_CARRIED_COUNT_HEADER = "Reconciler-Also-Carried-Count"
ALSO_CARRIED_MAX = 2048


def also_carried_headers(others: Sequence[str]) -> dict[str, str]:
    """The headers naming the orders `others` (`also_carried_from`, `also_carried_count` read
    them): the first ids that fit, and how many there are."""
    named = own_header(json.dumps(list(others[:1])))
    for n in range(2, len(others) + 1):
        value = own_header(json.dumps(list(others[:n])))
        if len(value) > ALSO_CARRIED_MAX:
            break
        named = value
    return {ALSO_CARRIED_HEADER: named, ALSO_CARRIED_COUNT_HEADER: str(len(others))}


def also_carried_from(headers: Mapping[str, str]) -> list[str]:
    """The ids ALSO_CARRIED_HEADER names among `headers`; none when it is absent or not a list
    of ids (an older daemon's answer, another service's)."""
    value = headers.get(ALSO_CARRIED_HEADER)
    try:
        ids = json.loads(own_from_header(value)) if value is not None else []
    except ValueError:
        return []
    return ids if isinstance(ids, list) and all(isinstance(i, str) for i in ids) else []


def also_carried_count(headers: Mapping[str, str]) -> int:
    """How many orders ALSO_CARRIED_COUNT_HEADER says carry the reference (0: absent or not a
    count, an older daemon's answer: ALSO_CARRIED_HEADER names them all)."""
    value = headers.get(ALSO_CARRIED_COUNT_HEADER, "")
    return int(value) if value.isascii() and value.isdigit() else 0


def say_also_carried(ref: str, order_id: str | None, others: Sequence[str], count: int = 0) -> None:
    """Warn on stderr, as `track --ref` does, that the order a submit made (`order_id`) carries
    a reference other followed orders carry too (`count` of them, where `others` is cut)."""
    if not others or not order_id:
        return
    count = max(count, len(others))
    more = f" (and {count - 1} more)" if count > 1 else ""
    say(
        f"reconciler: warning: reference {shown(ref)} is carried by order {shown(others[0])}"
        f"{more} too, which reconciler follows: order {shown(order_id)} is tracked with it",
        logging.WARNING,
    )


def followed_already(
    account: str, ref: str, carried_by: Sequence[tuple[str, str | None]]
) -> Result:
    """reconciler's 409 for a submit of `ref`, which the followed orders `carried_by` carry
    (each with its status: None, not checked yet), not all ended unpaid."""
    first, status = carried_by[0]
    ids = [oid for oid, _ in carried_by]
    more = f" and {len(carried_by) - 1} more" if len(carried_by) > 1 else ""
    log.warning(
        "ccv.submit_reference_followed",
        extra=fields(account=account, external_reference=ref, carried_by=ids, status=status),
    )
    return json_result(
        409,
        {
            "error": "this externalReference is carried by an order reconciler follows "
            "already; not sent",
            "field": "externalReference",
            "state": None,
            "order_id": first,
            "order_status": status,
            "carried_by": ids,
            "external_reference": ref,
        },
        ref,
        None,
        own=f"external reference {ref} is followed already (order {first}, "
        f"{status or 'not checked yet'}{more}, carries it); not sent",
    )
