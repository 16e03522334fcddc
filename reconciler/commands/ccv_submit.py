"""`reconciler ccv submit FILE|-`: the submit flow for scripts; prints the new order's id.

With no daemon running the command holds the store itself. A running daemon owns the store
(one writer), so the command then goes through the daemon's integration API, which must be
configured. Exit 0 submitted, 65 refused (bad body, CCV's 4xx, reference submitted already),
75 try later or settle by hand (CCV's 5xx or 429, not reached, answer lost, a 2xx naming no
order id or one followed under another reference).
"""

from __future__ import annotations

import json
import logging

import aiohttp

from ..config import ApiConfig, Config
from ..exits import EX_CONFIG, EX_DATAERR, EX_OK, EX_TEMPFAIL
from ..logs import fields, say
from ..redact import config_secrets, redact
from ..writes.daemon_api import (
    authorization,
    held_elsewhere,
    nobody_listens,
    refused,
    token_refused,
)
from ..writes.submit_body import BadSubmission
from ..writes.submit_outcome import ORDER_ID_HEADER, REFERENCE_HEADER

log = logging.getLogger("reconciler.writes.submit")

DELIVER_TIMEOUT_S = 10.0
API_TIMEOUT_S = 120.0
ERROR_BODY_CHARS = 500


def exit_code(status: int) -> int:
    """Map the HTTP status of a submit's answer to the command's exit code."""
    if 200 <= status < 300:
        return EX_OK
    if status in (401, 403):
        return EX_CONFIG
    # 408 and 429 (too many requests) say "not now", not "this body is wrong".
    return EX_DATAERR if 400 <= status < 500 and status not in (408, 429) else EX_TEMPFAIL


def _report(
    status: int, body: bytes, order_id: str | None, reference: str | None, secrets: list[str]
) -> int:
    code = exit_code(status)
    if code == EX_OK:
        if order_id:
            print(order_id)
            return code
        # The order may exist but cannot be followed yet: the submission is uncertain, as when
        # the answer is lost, and a script must not take an empty id for success.
        # No usable id, or one of an order followed under another reference: the events'
        # `reason` (`reconciler events --type order.submit_uncertain`) says which.
        # CCV's notifications name no order: only a person who found it can settle it.
        say(
            f"reconciler: submitted (HTTP {status}) but no order is followed for it (CCV's "
            "answer names no usable order id, or one followed under another reference); "
            f"external reference {reference} is uncertain until you find its order at CCV "
            "and run `reconciler track ccv ID --ref REF`",
            logging.WARNING,
        )
        return EX_TEMPFAIL
    # CCV's error answer may echo what it was sent (the key, the signed URL) and may be a page of
    # any size: one masked, printable, bounded line.
    text = "".join(c if c.isprintable() else " " for c in body.decode("utf-8", errors="replace"))
    text = redact(" ".join(text.split()), secrets, limit=ERROR_BODY_CHARS)
    level = logging.WARNING if code == EX_TEMPFAIL else logging.ERROR  # worth trying again, or not
    say(f"reconciler: submit answered HTTP {status}: {text}", level)
    return code


async def submit_command(config: Config, account: str, document: object) -> int:
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
            return _report(result.status, result.body, result.order_id, result.reference, secrets)
    if config.api is None:
        raise held_elsewhere("nothing was sent")
    return await _through_api(config, config.api, account, document, secrets)


async def _through_api(
    config: Config, api: ApiConfig, account: str, document: object, secrets: list[str]
) -> int:
    url = api.url("/api/v1/ccv/orders")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_S)) as s:
        try:
            async with s.post(
                url, params={"account": account}, json=document, headers=authorization(api)
            ) as resp:
                if token_refused(resp.status, resp.headers):
                    return refused(config.file)
                body = await resp.read()
                order_id = resp.headers.get(ORDER_ID_HEADER)
                reference = resp.headers.get(REFERENCE_HEADER)
                status = resp.status
        except aiohttp.ClientConnectorError:
            return nobody_listens(api)  # another command (a catch-up, say) holds the store
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Whether the daemon sent it is unknown: it records the outcome, never re-sends.
            say(
                f"reconciler: the daemon's API did not answer ({type(exc).__name__}); "
                "see `reconciler events --type order.submit_uncertain` before submitting again",
                logging.WARNING,
            )
            return EX_TEMPFAIL
    log.info(
        "ccv.submit_via_api",
        extra=fields(account=account, status=status, external_reference=reference),
    )
    if status == 400 or status == 422:
        try:
            error = json.loads(body)
            where = f"{error['field']}: " if error.get("field") else ""
            say(f"reconciler: error: {where}{error['error']}")
            return EX_DATAERR
        except (ValueError, KeyError, TypeError):
            pass
    return _report(status, body, order_id, reference, secrets)
