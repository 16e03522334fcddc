"""`track ccv ID --ref REF` and the CCV submits of its reference: an uncertain one it settles
(itself holding the store, else through the running daemon's `[api]`), one still being sent
by the process holding the store, which it says (CCV may answer another order: both would
carry the reference, said then by the submit)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ..config import Config
from ..exits import EX_OK, EX_TEMPFAIL
from ..logs import fields, say
from ..store import Store, StoreLocked, WriterLock, references
from ..store import submissions as store_submissions
from ..terminal import shown

log = logging.getLogger("reconciler.cli")


async def resolve_submissions(
    config: Config,
    store: Store,
    lock: WriterLock,
    account: str,
    settles: Sequence[tuple[str, str]],
) -> int:
    """An order tracked with its reference settles an uncertain CCV submit of that reference,
    with an `order.submit_resolved`. Only the writer stores events (the daemon numbers them
    from what it stored last): without the writer lock the daemon settles it, through its
    `[api]`, as `POST /api/v1/orders` with the reference does."""
    from ..writes.interrupted import settle_interrupted

    try:
        lock.acquire()
    except StoreLocked:
        # The daemon settled what a stopped process left `sending` at its start: one still
        # `sending` is the holder's, whose CCV answer may name another order than this one.
        found = await store_submissions.open_of(store, account, [r for _, r in settles])
        _say_sending(account, [(oid, ref) for oid, ref in settles if found.get(ref) == "sending"])
        if held := [(oid, ref) for oid, ref in settles if found.get(ref) == "uncertain"]:
            return await _resolve_through_daemon(config, account, held)
        return EX_OK
    try:
        # As every writer does at its start: a submit a killed `ccv submit` left `sending`
        # becomes uncertain (with its event), so that its reference settles it now.
        await settle_interrupted(store)
        # Only the uncertain ones settle; delivered by the next writer (`catch-up`, or the
        # daemon's start).
        pairs: list[tuple[str | None, str]] = list(settles)
        if events := await store_submissions.resolve_many(
            store, account, pairs, "track", time.time()
        ):
            log.info("ccv.submit_resolved", extra=fields(account=account, given=len(events)))
            said = [(e.data["order_id"], e.data["external_reference"]) for e in events]
            _say_settled([(str(oid), str(ref)) for oid, ref in said])
    finally:
        lock.release()
    return EX_OK


async def _resolve_through_daemon(
    config: Config, account: str, settles: Sequence[tuple[str, str]]
) -> int:
    from ..writes.daemon_api import held_elsewhere, post_to_api

    if config.api is None:
        raise held_elsewhere(f"the uncertain submit of {shown(settles[0][1])} stays uncertain")
    for order_id, ref in settles:
        document = {
            "source": "ccv",
            "account": account,
            "order_id": order_id,
            "external_reference": ref,
        }
        answer = await post_to_api(config.file, config.api, "/api/v1/orders", document)
        if isinstance(answer, int):
            return answer
        status, body = answer
        if status not in (200, 201):
            say(
                f"reconciler: error: the daemon answered HTTP {status}: {body.get('error')}",
            )
            return EX_TEMPFAIL
        if body.get("submission_state") == "resolved":
            _say_settled([(order_id, ref)])
    return EX_OK


def _say_sending(account: str, orders: Sequence[tuple[str, str]]) -> None:
    """Warn that orders were tracked with the reference of a submit still being sent."""
    for order_id, ref in orders:
        references.log_submit_sending(log, account, order_id, ref)
    if orders:
        say(
            f"reconciler: warning: a submit of reference {shown(orders[0][1])} is being sent "
            f"(CCV has not answered yet): order {shown(orders[0][0])} is tracked with it"
            f"{and_more(orders)}; should CCV answer another order, both carry it",
            logging.WARNING,
        )


def _say_settled(orders: Sequence[tuple[str, str]]) -> None:
    """Say that this track settled the uncertain submits of orders' references."""
    if orders:
        say(
            f"reconciler: the uncertain submit of reference {shown(orders[0][1])} is resolved: "
            f"order {shown(orders[0][0])} tracked with it is taken for its order{and_more(orders)} "
            "(order.submit_resolved)",
            logging.INFO,
        )


def and_more(given: Sequence[object]) -> str:
    """` (and N more)` after the first of `given`, when there are more."""
    return f" (and {len(given) - 1} more)" if len(given) > 1 else ""
