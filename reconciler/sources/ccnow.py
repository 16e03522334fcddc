"""CCNow Order Update API client: the pending list, batched order queries, the answer parser."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from reconciler import USER_AGENT
from reconciler.config import CCNowConfig
from reconciler.model import InvalidOrderId, Observation, OrderKey, Outcome, normalize_ccnow_id
from reconciler.sources.errors import (
    AuthenticationFailed,
    ProtocolError,
    SourceError,
    SourceUnavailable,
)
from reconciler.sources.http import drain, request

log = logging.getLogger("reconciler.sources.ccnow")

# A pending list of tens of thousands of orders is well below this.
MAX_BODY_BYTES = 8 * 1024 * 1024
# The provider's own words go into exception texts, but only this many of them.
MAX_TEXT_LENGTH = 200

_ORDER_ID = re.compile(r"\d{3}-?\d{2}-?\d{4}")
_STATUS_WORD = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LINE_END = re.compile(r"\r?\n")
_ERROR_WORDS = frozenset({"error", "error_message", "invalid", "not_found", "unknown"})
# An error_message about our credentials must stop retries, not look like an outage.
_AUTH_WORDS = re.compile(r"password|login|auth|client[\s_-]?id", re.IGNORECASE)
_ERROR_MESSAGE = "error_message"


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One `<id> <word> [rest]` line: a status, or a per-order error (status None)."""

    order_id: str  # hyphenated
    status: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A well-formed CCNow answer: its order lines in answer order, and `message` texts."""

    orders: tuple[OrderLine, ...]
    messages: tuple[str, ...]


def _error_answer(text: str) -> SourceError:
    text = text[:MAX_TEXT_LENGTH]
    if _AUTH_WORDS.search(text):
        return AuthenticationFailed(f"error_message: {text}")
    return SourceUnavailable(f"error_message: {text}")


def parse_answer(body: bytes | str) -> Answer:
    """Parse an answer strictly: an `error_message` or anything off the protocol raises."""
    if isinstance(body, bytes):
        try:
            # utf-8-sig: a byte order mark is not worth failing the source for.
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ProtocolError("answer is not UTF-8") from None
    else:
        text = body
    if text.lstrip().startswith("<"):
        raise ProtocolError("html page")
    lines = [stripped for line in _LINE_END.split(text) if (stripped := line.strip())]
    if not lines:
        raise ProtocolError("empty answer")
    # An error anywhere makes the whole answer an error, whatever else it contains.
    for line in lines:
        if line[: len(_ERROR_MESSAGE)].lower() == _ERROR_MESSAGE:
            raise _error_answer(line[len(_ERROR_MESSAGE) :].strip(" \t:"))

    orders: list[OrderLine] = []
    messages: list[str] = []
    for number, line in enumerate(lines, 1):
        parts = line.split(None, 2)
        first = parts[0]
        if first.lower() == "message":
            messages.append(line[len(first) :].strip())
        elif _ORDER_ID.fullmatch(first) and len(parts) >= 2:
            order_id = normalize_ccnow_id(first)
            word = parts[1]
            if word.lower() in _ERROR_WORDS:
                error = " ".join(parts[1:])[:MAX_TEXT_LENGTH]
                orders.append(OrderLine(order_id, None, error))
            elif _STATUS_WORD.fullmatch(word):
                orders.append(OrderLine(order_id, word))
            else:
                raise ProtocolError(f"line {number}: not a status word")
        else:
            raise ProtocolError(f"line {number}: not an answer line: {line[:40]!r}")
    return Answer(tuple(orders), tuple(messages))


def _by_id(answer: Answer) -> tuple[dict[str, OrderLine], set[str]]:
    """Return the last line per order id, and the ids whose lines disagree."""
    lines: dict[str, OrderLine] = {}
    disagreeing: set[str] = set()
    for line in answer.orders:
        previous = lines.get(line.order_id)
        if previous is not None and previous.status != line.status:
            disagreeing.add(line.order_id)
        lines[line.order_id] = line
    return lines, disagreeing


class CCNowClient:
    """Ask CCNow about the orders of one account; the session belongs to the caller."""

    def __init__(self, config: CCNowConfig, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session
        self._url = URL(config.url)
        self._fields = [("x_clientid", config.client_id), ("x_password", config.password.reveal())]
        if config.store_id:
            self._fields.append(("x_storeid", config.store_id))
        self._headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "text/plain",
            "User-Agent": USER_AGENT,
        }
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)

    async def pending_list(self) -> list[Observation]:
        """Return the orders CCNow lists as pending, as OK observations with their status."""
        answer = await self._post([])
        lines, disagreeing = _by_id(answer)
        observations = []
        for order_id, line in lines.items():
            if line.status is None or order_id in disagreeing:
                log.debug("ccnow.pending_line_skipped", extra={"fields": {"order_id": order_id}})
                continue
            key = OrderKey("ccnow", self._config.name, order_id)
            observations.append(Observation(key, Outcome.OK, status=line.status))
        return observations

    async def query(
        self,
        order_ids: Sequence[str],
        emit: Callable[[Observation], Awaitable[None]],
    ) -> None:
        """Query orders in batches and await `emit` for each; raise when a batch answer fails."""
        valid: dict[str, None] = {}
        for raw in order_ids:
            try:
                valid[normalize_ccnow_id(raw)] = None
            except InvalidOrderId:
                key = OrderKey("ccnow", self._config.name, raw)
                await emit(Observation(key, Outcome.FAILED, reason="invalid_id"))
        ids = list(valid)
        size = max(1, self._config.batch_size)

        def batches() -> Iterator[list[str]]:
            for start in range(0, len(ids), size):
                yield ids[start : start + size]

        async def handle(batch: list[str]) -> bool:
            for observation in self._match(batch, await self._post(batch)):
                await emit(observation)
            return True

        await drain(batches(), handle, self._config.concurrency)

    def _match(self, batch: list[str], answer: Answer) -> list[Observation]:
        """Turn an answer into one observation per asked order, matched by id."""
        lines, disagreeing = _by_id(answer)
        unasked = lines.keys() - set(batch)
        if unasked:
            log.debug("ccnow.unasked_ids", extra={"fields": {"order_ids": sorted(unasked)}})
        observations = []
        for order_id in batch:
            key = OrderKey("ccnow", self._config.name, order_id)
            line = lines.get(order_id)
            if order_id in disagreeing:
                observations.append(Observation(key, Outcome.FAILED, reason="protocol"))
            elif line is None:
                observations.append(Observation(key, Outcome.FAILED, reason="missing"))
            elif line.status is None:
                observations.append(Observation(key, Outcome.FAILED, reason="order_error"))
            else:
                observations.append(Observation(key, Outcome.OK, status=line.status))
        return observations

    async def _post(self, order_ids: list[str]) -> Answer:
        """Post one request (the pending list when `order_ids` is empty) and parse its answer."""
        fields = list(self._fields)
        for n, order_id in enumerate(order_ids, 1):
            fields += [(f"x_orderid_{n}", order_id), (f"x_action_{n}", "query")]
        reply = await request(
            self._session,
            "POST",
            self._url,
            headers=self._headers,
            data=urlencode(fields).encode("ascii"),
            timeout=self._timeout,
            retry=self._config.retry,
            max_body=MAX_BODY_BYTES,
            log=log,
        )
        if reply.status in (401, 403):
            raise AuthenticationFailed(f"http {reply.status}")
        if reply.status != 200:
            raise ProtocolError(f"http {reply.status}")
        if reply.content_type == "text/html":
            raise ProtocolError("html page")
        try:
            answer = parse_answer(reply.body)
        except SourceError as exc:
            raise self._redacted(exc) from None
        log.debug(
            "ccnow.answer",
            extra={"fields": {"asked": len(order_ids), "lines": len(answer.orders)}},
        )
        return answer

    def _redacted(self, exc: SourceError) -> SourceError:
        """Return `exc`, or a copy without our password should the provider have echoed it."""
        password = self._config.password.reveal()
        text = str(exc)
        if not password or password not in text:
            return exc
        return type(exc)(text.replace(password, "***"))
