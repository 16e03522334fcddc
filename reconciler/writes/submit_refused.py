"""A CCV submit refused because its reference names an order reconciler follows already.

A reference is meant to name one followed order (README, "CCV submit"): a submit of one that
an order tracked with it carries (`track --ref`, `POST /orders`, no submit of this store's)
would make a second order at CCV, which costs as the first did. It is answered as a reference
submitted already is (409, `ccv submit` 65): nothing recorded, nothing sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler.logs import fields
from reconciler.writes.submit_outcome import Result, json_result

log = logging.getLogger("reconciler.writes.submit")


def followed_already(account: str, ref: str, carried_by: Sequence[str]) -> Result:
    """reconciler's 409 for a submit of `ref`, which the followed orders `carried_by` carry."""
    first = carried_by[0]
    more = f" and {len(carried_by) - 1} more" if len(carried_by) > 1 else ""
    log.warning(
        "ccv.submit_reference_followed",
        extra=fields(account=account, external_reference=ref, carried_by=list(carried_by)),
    )
    return json_result(
        409,
        {
            "error": "this externalReference is carried by an order reconciler follows "
            "already; not sent",
            "field": "externalReference",
            "state": None,
            "order_id": first,
            "carried_by": list(carried_by),
            "external_reference": ref,
        },
        ref,
        None,
        own=f"external reference {ref} is followed already (order {first}{more} carries it); "
        "not sent",
    )
