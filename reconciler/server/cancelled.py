"""What the receiver says when it stops with notification checks not done: CCV calls a
notification URL once and never again, so the line names what was not checked (bounded), for
`reconciler catch-up` or a check by hand to follow."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

from ..logs import fields

MAX_NAMED = 20  # checks named in the line; `more` counts the rest
HINT = (
    "CCV does not call again: the next start's catch-up checks every followed order, "
    "a notified one first; "
    "`reconciler catch-up` does it while the daemon is stopped"
)


def named_checks(
    keys: Sequence[Hashable], ccnow_hints: Mapping[str, Mapping[str, bool]]
) -> list[dict[str, str]]:
    """Return what each debounce key (see the receiver) was to check: a CCV order or external
    reference, each CCNow order id hinted for the account, or the account alone (a CCNow poll
    of the pending list, which the next poll makes anyway)."""
    named: list[dict[str, str]] = []
    for key in keys:
        match key:
            case ("ccv", str(account), str(order_id)):
                named.append({"source": "ccv", "account": account, "order_id": order_id})
            case ("ccv-ref", str(account), str(reference)):
                named.append({"source": "ccv", "account": account, "external_reference": reference})
            case ("ccnow", str(account)):
                ids = list(ccnow_hints.get(account, {}))
                named.extend(
                    {"source": "ccnow", "account": account, "order_id": order_id}
                    for order_id in ids
                )
                if not ids:
                    named.append({"source": "ccnow", "account": account})
    return named


def log_cancelled(
    logger: logging.Logger,
    keys: Sequence[Hashable],
    ccnow_hints: Mapping[str, Mapping[str, bool]],
) -> None:
    """Log `notification.checks_cancelled` with the checks the stop cut short, if any."""
    if not keys:
        return
    named = named_checks(keys, ccnow_hints)
    logger.info(
        "notification.checks_cancelled",
        extra=fields(
            count=len(keys),
            orders=named[:MAX_NAMED],
            more=max(0, len(named) - MAX_NAMED),
            hint=HINT,
        ),
    )
