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
from reconciler.model import (
    InvalidOrderId,
    Observation,
    OrderKey,
    Outcome,
    ccnow_id,
    normalize_ccnow_id,
)
from reconciler.redact import redact
from reconciler.sources.errors import (
    AuthenticationFailed,
    ProtocolError,
    SourceError,
    SourceUnavailable,
)
from reconciler.sources.http import Reply, drain, request

log = logging.getLogger("reconciler.sources.ccnow")

# A pending list of tens of thousands of orders is well below this.
MAX_BODY_BYTES = 8 * 1024 * 1024
# The provider's own words go into exception texts, but only this many of them.
MAX_TEXT_LENGTH = 200
MAX_STATUS_LENGTH = 64

# ASCII only: other scripts' letters are not status words, other blanks do not separate words.
_STATUS = re.compile(r"[A-Za-z0-9_-]+(?:[ \t]+[A-Za-z0-9_-]+)*", re.ASCII)
_BLANKS = re.compile(r"[ \t]+")
_SPACE = " \t\f\v"
# Lines may end in CR LF, LF, or a bare CR (old Mac style); each is a line end.
_LINE_END = re.compile(r"\r\n|\r|\n")
_ERROR_WORDS = frozenset({"error", "error_message", "invalid", "not_found", "unknown"})
# What says CCNow does not know the order (its test server and sandbox answer `ID
# error_message unknown order`): the order is not found, not failing. Any other per-order
# error (`ID error_message database busy, try again later`) fails that order's check alone.
_NOT_FOUND_WORD = "not_found"
_UNKNOWN_ORDER = re.compile(
    r"\b(?:unknown|no such|not[ _]found|invalid)\s+order\b|\border\b.*\b(?:not[ _]found|unknown|"
    r"does not exist)\b",
    re.I,
)
# An error_message about our credentials must stop retries, not look like an outage.
_AUTH_WORDS = re.compile(r"password|login|auth|client[\s_-]?id", re.IGNORECASE)
_ERROR_MESSAGE = "error_message"
NO_PENDING_ORDERS = "no_pending_orders"


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One `<id> <status...>` line: a status, or a per-order error (status None)."""

    order_id: str  # hyphenated
    status: str | None
    error: str | None = None
    not_found: bool = False  # the error says CCNow does not know the order


@dataclass(frozen=True, slots=True)
class Answer:
    """A well-formed CCNow answer: its order lines in answer order, and `message` texts."""

    orders: tuple[OrderLine, ...]
    messages: tuple[str, ...]


def _readable(text: str) -> str:
    """Return provider text with the bytes that were not UTF-8 shown as U+FFFD: a lone
    surrogate cannot be encoded into a log line, an event or the database."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _quote(raw_line: str, secrets: Sequence[str], *, drop: str = "", limit: int) -> str:
    """Return provider text to quote in an error: masked first (as it came, so that no blank
    a secret begins with is lost), then trimmed, without its first word `drop`, and cut."""
    text = _readable(redact(raw_line.rstrip(_SPACE), secrets)).lstrip(_SPACE)
    if drop and text[: len(drop)].lower() == drop:
        text = text[len(drop) :]
    return text.strip(" \t:")[:limit]


def _error_answer(what: str, raw_line: str, secrets: Sequence[str]) -> SourceError:
    text = _quote(raw_line, secrets, drop=what, limit=MAX_TEXT_LENGTH)
    shown = f"{what}: {text}" if text else what
    if _AUTH_WORDS.search(raw_line):
        return AuthenticationFailed(shown)
    return SourceUnavailable(shown)


def _order_line(order_id: str, rest: str, secrets: Sequence[str]) -> OrderLine:
    """Read what follows an order id: a status (kept verbatim), or a per-order error."""
    word = _BLANKS.split(rest, maxsplit=1)[0].lower()
    if word in _ERROR_WORDS:
        error = _readable(redact(rest, secrets, limit=MAX_TEXT_LENGTH))
        not_found = word == _NOT_FOUND_WORD or (
            word == _ERROR_MESSAGE and _UNKNOWN_ORDER.search(rest) is not None
        )
        return OrderLine(order_id, None, error, not_found=not_found)
    # A status of several words (`on hold`) is one status: unknown words are kept, not cut.
    status = " ".join(_BLANKS.split(rest))
    if len(status) > MAX_STATUS_LENGTH or not _STATUS.fullmatch(rest):
        # Not a word a log line and a database can keep as it is: this order's failure alone,
        # never its batch's (its id is one the account knows).
        return OrderLine(order_id, None, "unreadable status")
    return OrderLine(order_id, status)


def answered_orders(body: bytes) -> bool:
    """Return whether an answer has a line for an order, whatever else it holds (an action's
    post whose answer is an error may still have been applied to those orders)."""
    for line in _LINE_END.split(body.decode("utf-8", "replace")):
        words = line.split(None, 1)
        try:
            normalize_ccnow_id(words[0] if words else "")
        except InvalidOrderId:
            continue
        return True
    return False


def parse_answer(body: bytes | str, *, secrets: Sequence[str] = ()) -> Answer:
    """Parse an answer strictly: an `error_message` or anything off the protocol raises.

    Provider text quoted in an error is masked for `secrets` (in any encoding) before it is cut.
    """
    # utf-8-sig: a byte order mark is not worth failing the source for. A byte that is not
    # UTF-8 (an old CGI's latin-1) is kept as a lone surrogate: the line holding it is that
    # order's failure alone (no status word matches it), never the whole answer's.
    text = body.decode("utf-8-sig", "surrogateescape") if isinstance(body, bytes) else body
    # Decided by the body, whatever the Content-Type says: a page is never an answer.
    if text.lstrip().startswith("<"):
        raise ProtocolError("html page")
    # (as received, trimmed) per line that is not blank
    lines = [(raw, line) for raw in _LINE_END.split(text) if (line := raw.strip(_SPACE))]
    if not lines:
        raise ProtocolError("empty answer")
    # An error anywhere makes the whole answer an error, whatever else it contains.
    for raw, line in lines:
        if line[: len(_ERROR_MESSAGE)].lower() == _ERROR_MESSAGE:
            raise _error_answer(_ERROR_MESSAGE, raw, secrets)

    orders: list[OrderLine] = []
    messages: list[str] = []
    unknown: str | None = None
    for number, (raw, line) in enumerate(lines, 1):
        first, *more = _BLANKS.split(line, maxsplit=1)
        rest = more[0] if more else ""
        if first.lower() == "message":
            messages.append(rest)
            # `no_pending_orders` is the one documented message; any other may say the account
            # is locked or the list unavailable, never that nothing is pending.
            if rest.lower() != NO_PENDING_ORDERS and unknown is None:
                unknown = raw
        elif rest and (order_id := ccnow_id(first)) is not None:
            orders.append(_order_line(order_id, rest, secrets))
        else:
            shown = _quote(raw, secrets, limit=40)
            raise ProtocolError(f"line {number}: not an answer line: {shown!r}")
    if unknown is not None:
        raise _error_answer("message", unknown, secrets)
    return Answer(tuple(orders), tuple(messages))


def is_complete(reply: Reply) -> bool:
    """Whether an answer arrived whole: a 200 body ends with a line end, as every line does.

    A connection closed mid-answer (no Content-Length) leaves the last line cut, and a cut
    word (`pend`) would read as a status; such an answer is a transport failure, and retried.
    """
    return reply.status != 200 or not reply.body or reply.body.endswith((b"\n", b"\r"))


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
        self._secrets = (config.password.reveal(),)

    async def pending_list(self) -> list[Observation]:
        """Return the orders CCNow lists as pending, as OK observations with their status.

        A line that says no status (one that is not a status word, an error, two lines that
        disagree) is left out, with one warning per answer naming them. A followed order on it
        is not on the list as read: a catch-up queries it on its own, as a poll does one the
        snapshot holds as pending, and a due tick any other; that answer is its check. One
        nobody follows is no check of the account's at all."""
        answer = await self._post([])
        lines, disagreeing = _by_id(answer)
        observations = []
        unreadable = []
        for order_id, line in lines.items():
            if order_id in disagreeing or line.status is None:
                unreadable.append(order_id)
                continue
            key = OrderKey("ccnow", self._config.name, order_id)
            observations.append(Observation(key, Outcome.OK, status=line.status))
        if unreadable:
            log.warning(
                "ccnow.pending_lines_unreadable",
                extra={
                    "fields": {
                        "account": self._config.name,
                        "count": len(unreadable),
                        "order_ids": unreadable[:10],
                    }
                },
            )
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
            elif line.not_found:
                observations.append(Observation(key, Outcome.NOT_FOUND))
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
            complete=is_complete,
        )
        if reply.status in (401, 403):
            raise AuthenticationFailed(f"http {reply.status}")
        if reply.status != 200:
            raise ProtocolError(f"http {reply.status}")
        try:
            answer = parse_answer(reply.body, secrets=self._secrets)
        except SourceError as exc:
            # parse_answer masked what it quoted; this catches anything it did not foresee.
            text = str(exc)
            masked = redact(text, self._secrets)
            raise (exc if masked == text else type(exc)(masked)) from None
        log.debug(
            "ccnow.answer",
            extra={"fields": {"asked": len(order_ids), "lines": len(answer.orders)}},
        )
        return answer
