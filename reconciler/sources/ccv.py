"""CCV boarding API client: the orderStatus of one order, and a bounded pass over many."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from reconciler import USER_AGENT
from reconciler.config import CCVConfig
from reconciler.model import (
    UNKEPT_ANSWERS,
    UNUSABLE_REFERENCE,
    UNUSABLE_STATUS,
    InvalidOrderId,
    Observation,
    OrderKey,
    Outcome,
    known_statuses,
    reference_problem,
    validate_ccv_id,
)
from reconciler.redact import answer_forms, holds_secret
from reconciler.sources.ccv_document import BLANKS, status_document
from reconciler.sources.errors import (
    KEY_REFUSED,
    AuthenticationFailed,
    CircuitOpen,
    OrderRefused,
    ProtocolError,
    SourceUnavailable,
)
from reconciler.sources.http import Reply, RequestFailed, drain, request
from reconciler.sources.rest import AccountRest
from reconciler.strict_json import json_type, loads_answer

log = logging.getLogger("reconciler.sources.ccv")

# A status answer is a few dozen bytes; anything near this is not one.
MAX_BODY_BYTES = 1024 * 1024
# A documented status word holds no secret: only another word is searched for one.
_DOCUMENTED = frozenset(known_statuses("ccv"))

# Failures that say the provider is down rather than that one order is odd. A 404 that is not
# CCV's own JSON answer comes from something in between (a gateway, a wrong base URL).
OUTAGE_REASONS = frozenset(
    {"timeout", "connection", "http_429", "gateway_404"}
    | {f"http_{code}" for code in range(500, 600)}
)
# Order ids a `ccv.reference_dropped` line names (it counts them all).
DROPPED_NAMED = 5
# An order id no order has: the probe (`check --online`, the heartbeat) asks CCV about it.
PROBE_ORDER_ID = "reconciler-probe"
# A 401 about one order: its failure's reason, and the account's when it fails of it.
REFUSED = "http_401"
_REFUSED_TEXT = KEY_REFUSED


def auth_headers(config: CCVConfig) -> dict[str, str]:
    """Return the request headers that carry the API key as `config.auth` says."""
    key = config.api_key.reveal()
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if config.auth == "basic":
        # CCV's scheme: the key is the user name, the password is empty.
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode("ascii")
    elif config.auth == "bearer":
        headers["Authorization"] = f"Bearer {key}"
    else:
        headers[config.auth_header] = key
    return headers


def is_ccv_answer(reply: Reply) -> bool:
    """Whether CCV itself answered: its error answers are JSON, the pages of gateways and
    proxies are not. Label and body must both say so: a gateway may label its page JSON."""
    content_type = reply.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        return False
    try:
        loads_answer(reply.body)
    except (ValueError, RecursionError):
        return False
    return True


class CCVClient:
    """Ask CCV for the status of orders of one account; the session belongs to the caller, and
    so may `gate`, the account's bound on its requests in flight (Gates: shared with its
    writes; by default the client's own). Every check holds it, a notification's too: however
    many run at once, no more than `concurrency` requests are out. `secrets`: the config's
    (config_secrets), never kept as a status or reference, as the account's API key is not;
    asked for, not defaulted: a client given none would keep an answer that echoes any other."""

    def __init__(
        self,
        config: CCVConfig,
        session: aiohttp.ClientSession,
        *,
        gate: asyncio.Semaphore | None = None,
        secrets: Sequence[str],
        rest: AccountRest | None = None,
    ) -> None:
        self._config = config
        self._rest = rest  # the account's (a coordinator's client): each check holds it
        self._gate = asyncio.Semaphore(config.concurrency) if gate is None else gate
        self._session = session
        # Each check replaces the path of the base URL: cheaper than parsing a whole URL.
        self._base = URL(config.base_url)
        self._prefix = self._base.raw_path.rstrip("/") + "/api/ordercompletion/reseller/order/"
        # Already a multidict: aiohttp would otherwise convert the headers on every request.
        self._headers = CIMultiDictProxy(CIMultiDict(auth_headers(config)))
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._breaker_limit = max(5, 2 * config.concurrency)
        # An answer that holds the key, or another secret of the config (a provider may echo
        # any), in any of its forms, is kept nowhere.
        self._key_forms = answer_forms(config.api_key.reveal(), secrets)

    async def fetch(self, order_id: str) -> Observation:
        """Return what CCV says about one order; raise OrderRefused on 401."""
        dropped: list[tuple[str, str]] = []
        observation, _ = await self._check(order_id, dropped)
        self._said_dropped(dropped)
        if observation.reason == REFUSED:
            raise OrderRefused(_REFUSED_TEXT, order_id, observation.asked)
        return observation

    async def probe(self) -> None:
        """Prove that CCV answers and accepts the key; raise SourceError when it does not.

        CCV answers a made-up order id with 404, or perhaps with 400: any answer that shows
        the key was accepted (a 2xx whose orderStatus is text, whatever it says, as a check
        counts it; CCV's own JSON 404 or 400) will do; a 401,
        a page (a gateway's, a login wall's, a maintenance page served with 200) or a 400 that
        is not CCV's JSON (something in between refused the request) won't.
        """
        reply = await self._get(PROBE_ORDER_ID)
        status = reply.status
        if status in (401, 403):
            # For an id that is no one's order, a 403 is about the key, as for a submit.
            raise AuthenticationFailed(f"http {status}")
        if status in (400, 404) and is_ccv_answer(reply):
            return
        if 200 <= status < 300 and status_document(reply.body) is not None:
            return
        if 200 <= status < 300 or status == 400:
            if _is_page(reply.body):
                raise SourceUnavailable(f"html page (http {status})")
            if status == 400:
                raise SourceUnavailable("gateway 400")
            # "OK", an empty body, `{"message": "maintenance"}`: what makes every check fail
            # with `protocol` must not prove the account answers.
            raise SourceUnavailable(f"protocol (http {status})")
        raise SourceUnavailable(_failure_reason(reply).replace("_", " "))

    async def check_orders(
        self,
        order_ids: Iterable[str],
        emit: Callable[[Observation], Awaitable[None]],
        *,
        key_taken: bool = False,
    ) -> None:
        """Check every order, awaiting `emit` for each; stop at an outage (CircuitOpen), and at a
        401 before any answer took the key (OrderRefused: the slow start's first request, for a
        bad key) or in a run as long as the breaker's (AuthenticationFailed: the key revoked).
        A 401 after an answer that took the key (`key_taken`: the caller saw one) is that
        order's failure, `REFUSED`: CCV refusing one order must not fail the account."""
        # Circuit breaker: that many checks failing in a row means the provider is down, and
        # asking the remaining orders (each with its retries) would only prolong the outage.
        consecutive = refused = 0
        opened = False
        asked: list[str] = []  # the orders whose failures the breaker did not emit

        async def handle(order_id: str) -> bool:
            nonlocal consecutive, opened, refused, key_taken
            observation, requested = await self._check(order_id, dropped)
            if observation.reason == REFUSED:
                refused += 1
                if not key_taken:
                    raise OrderRefused(_REFUSED_TEXT, order_id, observation.asked)
                if refused >= self._breaker_limit:
                    raise AuthenticationFailed(_REFUSED_TEXT)
            elif observation.outcome is not Outcome.FAILED or observation.reason in UNKEPT_ANSWERS:
                refused, key_taken = 0, True  # CCV answered about an order: the key was taken
            if observation.reason in OUTAGE_REASONS:
                consecutive += 1
                if consecutive >= self._breaker_limit:
                    reason = str(observation.reason).replace("_", " ")
                    if not opened:  # once: the checks still in flight each find it open too
                        opened = True
                        log.warning(
                            "ccv.circuit_open",
                            extra={
                                "fields": {
                                    "account": self._config.name,
                                    "consecutive_failures": consecutive,
                                    "reason": observation.reason,
                                }
                            },
                        )
                    asked.append(order_id)  # its failure not emitted
                    raise CircuitOpen(f"{consecutive} consecutive failures, last: {reason}", asked)
            elif observation.outcome is not Outcome.FAILED:
                consecutive = 0
            await emit(observation)
            return requested

        dropped: list[tuple[str, str]] = []
        try:
            await drain(order_ids, handle, self._config.concurrency)
        finally:
            self._said_dropped(dropped)

    def _said_dropped(self, dropped: Sequence[tuple[str, str]]) -> None:
        """One line for the references a pass dropped, not one per check: a CCV that answers
        every reference as a number would otherwise log a line per order, every pass."""
        if dropped:
            log.warning(
                "ccv.reference_dropped",
                extra={
                    "fields": {
                        "account": self._config.name,
                        "orders": len(dropped),
                        "order_ids": [order_id for order_id, _ in dropped[:DROPPED_NAMED]],
                        "types": sorted({kind for _, kind in dropped}),
                    }
                },
            )

    async def _check(
        self, order_id: str, dropped: list[tuple[str, str]]
    ) -> tuple[Observation, bool]:
        """Return the observation of one order and whether a request was made for it; a
        reference dropped is added to `dropped` (order id, its JSON type)."""
        status: str | None = None
        reference: str | None = None
        reason: str | None
        requested = True
        # An answer is as of the attempt that brought it (diff.stale), a failure after retries
        # as of its last attempt; one with no attempt's time (no request, an answer too large
        # to read) as of when it failed.
        try:
            segment = quote(validate_ccv_id(order_id), safe="")
            reply = await self._get(segment)
        except InvalidOrderId:
            outcome, reason, asked, requested = Outcome.FAILED, "invalid_id", time.time(), False
        except RequestFailed as exc:
            outcome, reason, asked = Outcome.FAILED, exc.word, exc.sent_at
        except ProtocolError:
            outcome, reason, asked = Outcome.FAILED, "protocol", time.time()
        else:
            asked = reply.sent_at
            outcome, status, reference, reason = self._read(order_id, reply, dropped)
        # One constructor call per check, dated in this one place.
        key = OrderKey("ccv", self._config.name, order_id)
        observation = Observation(
            key, outcome, status=status, external_reference=reference, reason=reason, asked=asked
        )
        return observation, requested

    def _read(
        self, order_id: str, reply: Reply, dropped: list[tuple[str, str]]
    ) -> tuple[Outcome, str | None, str | None, str | None]:
        """Return what an answer says of an order: outcome, status, reference, failure reason.
        A 401 is `REFUSED`."""
        status = reply.status
        if 200 <= status < 300:  # a 2xx carrying an orderStatus, as the probe takes it
            document = status_document(reply.body)
            if document is not None:
                word, answered = document
                if word is None or (word not in _DOCUMENTED and self._holds_key(word)):
                    # CCV took the key and answered about this order, in words nothing may
                    # keep: the order's failure alone, and an answer to the account's health.
                    return Outcome.FAILED, None, None, UNUSABLE_STATUS
                if isinstance(answered, str):
                    # Blanks around it are no part of it, as for the status word: no submit
                    # nor notification URL takes a reference with them, nor one of blanks alone.
                    # Blanks only: str.strip() drops controls too (\x1c-\x1f, \x85, \n),
                    # and a reference holding one is unusable, not another reference.
                    answered = answered.strip(BLANKS)
                if answered is None or answered == "":
                    # No reference (else it would differ from the tracked one on every check).
                    return Outcome.OK, word, None, None
                if not isinstance(answered, str):
                    # Not the documented shape: dropped, and said; the status still holds.
                    dropped.append((order_id, json_type(answered)))
                    return Outcome.OK, word, None, None
                if reference_problem(answered, given=False) is not None or self._holds_key(
                    answered
                ):
                    # Text no database, log or URL holds (nor a secret) fails this order
                    # alone; its `order.check_failed` line says why.
                    return Outcome.FAILED, None, None, UNUSABLE_REFERENCE
                return Outcome.OK, word, answered, None
            log.debug(
                "ccv.protocol",
                extra={"fields": {"order_id": order_id, "content_type": reply.content_type}},
            )
            return Outcome.FAILED, None, None, "protocol"
        if status == 404 and is_ccv_answer(reply):
            return Outcome.NOT_FOUND, None, None, None
        # A 403 is that order's failure: whether it means "not your order" or "this key may not
        # do this" is not documented, and one order must not stop the account. So is a 401
        # where other answers took the key (`check_orders`).
        return Outcome.FAILED, None, None, _failure_reason(reply)

    def _holds_key(self, text: str) -> bool:
        """Whether an answer's status or reference holds a secret: it would be kept in the
        snapshot, the events and the log. Not an answer then, but that order's failure."""
        return holds_secret(text, self._key_forms)

    def _get(self, segment: str) -> Coroutine[None, None, Reply]:
        """Ask for the status of the order whose id is the (quoted) path segment `segment`:
        the request itself to await, not a coroutine around it (one more per check)."""
        url = self._base.with_path(f"{self._prefix}{segment}/status", encoded=True)
        return request(
            self._session,
            "GET",
            url,
            headers=self._headers,
            timeout=self._timeout,
            gate=self._gate,
            retry=self._config.retry,
            max_body=MAX_BODY_BYTES,
            log=log,
            rest=self._rest,
        )


def _is_page(body: bytes) -> bool:
    """Whether a body is an HTML page: what something in front of CCV answers, never CCV."""
    return body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _failure_reason(reply: Reply) -> str:
    """Return the Observation reason of an answer that is neither a status nor CCV's own 404."""
    if reply.status == 404:
        return "gateway_404"  # not CCV's JSON: a gateway or a wrong base URL answered
    return f"http_{reply.status}"
