"""CCNow's answer lines read strictly: order lines, `message` lines, `error_message` lines."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.logs import fields
from reconciler.model import InvalidOrderId, ccnow_id, known_statuses, normalize_ccnow_id
from reconciler.redact import SecretForms, holds_secret, mask, text_forms
from reconciler.sources.errors import (
    AuthenticationFailed,
    ProtocolError,
    SourceError,
    SourceUnavailable,
)
from reconciler.sources.http import Reply

log = logging.getLogger("reconciler.sources.ccnow")

# The provider's own words go into exception texts, but only this many of them.
MAX_TEXT_LENGTH = 200
MAX_STATUS_LENGTH = 64
# Order ids a log line names, at most.
LOGGED_IDS = 10

# ASCII only: other scripts' letters are not status words, other blanks do not separate words.
_STATUS = re.compile(r"[A-Za-z0-9_-]+(?:[ \t]+[A-Za-z0-9_-]+)*", re.ASCII)
_BLANKS = re.compile(r"[ \t]+")
_SPACE = " \t\f\v"
# Lines may end in CR LF, LF, or a bare CR (old Mac style); each is a line end.
_LINE_END = re.compile(r"\r\n|\r|\n")
_ERROR_WORDS = frozenset({"error", "error_message", "invalid", "not_found", "unknown"})
# CCNow's documented status words. One in any case (`MARK_SHIPPED`) is that word: stored as written,
# a later answer in the document's case would raise a change that is none, and a word in capitals
# would never count as settled. Followed by columns of data (`pending\tUSD`, `MARK_SHIPPED
# 2026-11-30`, `pending 2026-11-30 12.50`) it names the status: else each new column would read as
# another status. Followed by words (`pending review`), it may be a new status: kept whole, as
# written, as every word the document does not list is.
DOCUMENTED = frozenset(known_statuses("ccnow"))
_DOCUMENTED = {word.lower(): word for word in DOCUMENTED}
_DIGIT = re.compile(r"[0-9]")
_CODE = re.compile(r"[A-Z]{2,5}", re.ASCII)  # `USD`, `UPS`
# What says CCNow does not know the order (its test server and sandbox answer `ID
# error_message unknown order`): the order is not found, not failing. The words must say so of
# the order itself: `order lookup failed: unknown error, try again later` or `database busy`
# fail that order's check alone.
_NOT_FOUND_WORD = "not_found"
# The text must end where the statement does (an id or punctuation may follow): `unknown order
# state` or `no such order table` say something else.
_ORDER = r"order(?:[ _]?(?:id|number|no\.?))?"
_ENDS = r"(?=\s*(?:$|[-.:;,!(#\u2013]|[0-9]|(?:for|in|with|on|exists?|found)\b))"
_UNKNOWN_ORDER = re.compile(
    r"^\s*(?:not[ _]found|does\s+not\s+exist)"
    + _ENDS
    + r"|\b(?:unknown|no\s+such|nonexistent|non-existent|invalid)\s+"
    + _ORDER
    + _ENDS
    + r"|\b"
    + _ORDER
    + r"(?:\s+#?[0-9-]+)?[\s_]+(?:not[ _]found|unknown|does\s+not\s+exist)"
    + _ENDS,
    re.I,
)
# ... and never says to come back: `order not found in cache, retry later` is not an answer.
_TEMPORARY = re.compile(r"retry|try\s+again|later|temporar|busy|timeout|timed\s+out|cache", re.I)
# An error_message about our credentials must stop retries, not look like an outage; one that
# says the service is down is an outage, whatever else it names (`login server upgrade`). Wide
# on purpose: a poll taken for an outage is only retried, one taken for bad credentials stops.
_AUTH_WORDS = re.compile(r"password|login|auth|client[\s_-]?id", re.IGNORECASE)
_OUTAGE_WORDS = re.compile(r"maintenance|\bdown\b|offline|unavailable|outage", re.I)
# What says CCNow itself is down, for an action's post: phrases, not words. A bare `down` or
# `unavailable` is as likely about the command (`Discount unavailable for this order`, `price
# marked down already`), and a line taken for an outage decides nothing however long it comes.
_DOWN = re.compile(
    r"maintenance|\boutage\b|(?:temporarily|service|system|server)\s+unavailable"
    r"|\b(?:try|retry)\s+(?:again\s+)?later\b"
    r"|\b(?:ccnow|system|server|service|site|database)\s+(?:is\s+|are\s+)?"
    r"(?:currently\s+|temporarily\s+)?(?:down|offline)\b",
    re.I,
)
_ERROR_MESSAGE = "error_message"
NO_PENDING_ORDERS = "no_pending_orders"
UNREADABLE = "unreadable status"


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One `<id> <status...>` line: a status, or a per-order error (status None)."""

    order_id: str  # hyphenated
    status: str | None
    error: str | None = None
    not_found: bool = False  # the error says CCNow does not know the order
    # A status no word can be read from (`pending (awaiting)`, `mark_shipped.`): no error of
    # CCNow's, and no word of what CCNow did with the order.
    unreadable: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """A well-formed CCNow answer: its order lines in answer order, and `message` texts."""

    orders: tuple[OrderLine, ...]
    messages: tuple[str, ...]


def _readable(text: str) -> str:
    """Return provider text with the bytes that were not UTF-8 shown as U+FFFD: a lone
    surrogate cannot be encoded into a log line, an event or the database."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _quote(raw_line: str, forms: SecretForms | None, *, drop: str = "", limit: int) -> str:
    """Return provider text to quote in an error: masked first (as it came, so that no blank
    a secret begins with is lost), then trimmed, without its first word `drop`, and cut."""
    text = _readable(mask(raw_line.rstrip(_SPACE), forms)).lstrip(_SPACE)
    if drop and text[: len(drop)].lower() == drop:
        text = text[len(drop) :]
    return text.strip(" \t:")[:limit]


def _error_answer(what: str, raw_line: str, forms: SecretForms | None) -> SourceError:
    text = _quote(raw_line, forms, drop=what, limit=MAX_TEXT_LENGTH)
    shown = f"{what}: {text}" if text else what
    if _AUTH_WORDS.search(raw_line) and not _OUTAGE_WORDS.search(raw_line):
        return AuthenticationFailed(shown)
    return SourceUnavailable(shown)


def says_not_found(text: str) -> bool:
    """Return whether a per-order error text says CCNow does not know the order."""
    return _UNKNOWN_ORDER.search(text) is not None and _TEMPORARY.search(text) is None


def _order_line(order_id: str, rest: str, forms: SecretForms | None) -> tuple[OrderLine, bool]:
    """Read what follows an order id: a status (a documented word in the document's case,
    any other verbatim), or a per-order error; and whether columns after a documented status
    word were left out."""
    first, *more = _BLANKS.split(rest, maxsplit=1)
    word = first.lower()
    if word in _ERROR_WORDS:
        error = _readable(mask(rest, forms, limit=MAX_TEXT_LENGTH))
        after = more[0] if more else ""
        not_found = word == _NOT_FOUND_WORD or (word == _ERROR_MESSAGE and says_not_found(after))
        return OrderLine(order_id, None, error, not_found=not_found), False
    if word in _DOCUMENTED and (not more or "\t" in rest or _is_data(more[0])):
        return OrderLine(order_id, _DOCUMENTED[word]), bool(more)
    # A status of several words (`on hold`) is one status: unknown words are kept, not cut.
    status = " ".join(_BLANKS.split(rest))
    if (
        len(status) > MAX_STATUS_LENGTH
        or not _STATUS.fullmatch(rest)
        or holds_secret(status, forms)
    ):
        # Not a word a log line and a database can keep as it is (nor one that echoes our
        # password, which would be kept verbatim): this order's failure alone, never its
        # batch's (its id is one the account knows).
        return OrderLine(order_id, None, UNREADABLE, unreadable=True), False
    return OrderLine(order_id, status), False


def _is_data(columns: str) -> bool:
    """Whether what follows a status word is data (a date, an amount, a tracking number, codes
    in capitals), not words that may make a new status (`pending review`)."""
    return _DIGIT.search(columns) is not None or all(
        _CODE.fullmatch(c) for c in _BLANKS.split(columns)
    )


def refusal_lines(body: bytes, secrets: Sequence[str] = ()) -> list[str] | None:
    """Return the lines of an answer made of `error_message` lines alone: CCNow turned the whole
    post away, whatever its words say. None for any other answer. Each line masked and cut as
    a per-order error's words are."""
    found, forms = [], text_forms(secrets)
    for raw in _LINE_END.split(_text(body)):
        line = raw.strip(_SPACE)
        if not line:
            continue
        if line[: len(_ERROR_MESSAGE)].lower() != _ERROR_MESSAGE:
            return None
        found.append(_readable(mask(line, forms, limit=MAX_TEXT_LENGTH)))
    return found or None


def says_down(line: str) -> bool:
    """Whether an error line says CCNow is down (`system down for maintenance`, the document's
    example; `Service Unavailable`, `try again later`): such a line decides nothing, whatever
    field it names, and starts no day (writes/ccnow_outcome.py bounds it otherwise)."""
    return _DOWN.search(line) is not None


def message_lines(body: bytes, secrets: Sequence[str] = ()) -> list[str] | None:
    """Return the lines of an answer made of CCNow's `message` and `error_message` lines
    alone, at least one `message` (`message discount recorded`): CCNow's words about the post
    that name no order. None for any other answer. Each line masked and cut."""
    found, forms = [], text_forms(secrets)
    for raw in _LINE_END.split(_text(body)):
        line = raw.strip(_SPACE)
        if not line:
            continue
        if _BLANKS.split(line, maxsplit=1)[0].lower() not in ("message", _ERROR_MESSAGE):
            return None
        found.append(_readable(mask(line, forms, limit=MAX_TEXT_LENGTH)))
    if not any(line[:7].lower() == "message" for line in found):
        return None
    return found


def speaks_ccnow(body: bytes) -> bool:
    """Whether an answer holds a line of CCNow's protocol (an order's line, a `message` or an
    `error_message`), not only a page or a gateway's words."""
    for raw in _LINE_END.split(_text(body)):
        first = _BLANKS.split(raw.strip(_SPACE), maxsplit=1)[0]
        if first.lower() in ("message", _ERROR_MESSAGE) or ccnow_id(first) is not None:
            return True
    return False


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


def _text(body: bytes | str) -> str:
    # utf-8-sig: a byte order mark is not worth failing the source for. A byte that is not
    # UTF-8 (an old CGI's latin-1) is kept as a lone surrogate: the line holding it is that
    # order's failure alone (no status word matches it), never the whole answer's.
    return body.decode("utf-8-sig", "surrogateescape") if isinstance(body, bytes) else body


def _is_page(text: str) -> bool:
    """Whether an answer is a page (HTML), decided by the body, whatever the Content-Type
    says: a page is never an answer."""
    return text.lstrip().startswith("<")


def parse_answer(body: bytes | str, *, secrets: Sequence[str] = ()) -> Answer:
    """Parse an answer strictly: an `error_message` or anything off the protocol raises.

    Provider text quoted in an error is masked for `secrets` (in any encoding) before it is cut.
    """
    text, forms = _text(body), text_forms(secrets)
    if _is_page(text):
        raise ProtocolError("html page")
    # (as received, trimmed) per line that is not blank
    lines = [(raw, line) for raw in _LINE_END.split(text) if (line := raw.strip(_SPACE))]
    if not lines:
        raise ProtocolError("empty answer")
    # An error anywhere makes the whole answer an error, whatever else it contains.
    for raw, line in lines:
        if line[: len(_ERROR_MESSAGE)].lower() == _ERROR_MESSAGE:
            raise _error_answer(_ERROR_MESSAGE, raw, forms)

    orders: list[OrderLine] = []
    messages: list[str] = []
    unknown: str | None = None
    extra_columns: list[str] = []
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
            order, cut = _order_line(order_id, rest, forms)
            orders.append(order)
            if cut:
                extra_columns.append(order_id)
        else:
            shown = _quote(raw, forms, limit=40)
            raise ProtocolError(f"line {number}: not an answer line: {shown!r}")
    if unknown is not None:
        raise _error_answer("message", unknown, forms)
    if extra_columns:
        # Once per answer: a layout CCNow changed shows on every line of every poll.
        log.debug(
            "ccnow.extra_columns_ignored",
            extra=fields(count=len(extra_columns), order_ids=extra_columns[:LOGGED_IDS]),
        )
    return Answer(tuple(orders), tuple(messages))


def is_complete(reply: Reply) -> bool:
    """Whether an answer arrived whole: one whose Content-Length it matched did (aiohttp
    raises on one that ends short), and any other 200 body ends with a line end, as every line
    does; or, chunked, its last line reads as a whole line (`_reads_whole`: a CGI behind a web
    server is chunked, and the document does not promise a final line end).

    A connection closed mid-answer leaves the last line cut, and a cut word (`pend`) would
    read as a status; so does a CGI that dies mid-line behind a web server, which still ends
    its chunked answer cleanly. Such an answer is a transport failure, and retried. A page is
    no answer, whole or not: `parse_answer` says so (`html page`), with no retry.
    """
    line = _open_line(reply)
    if line is None:
        return True
    if reply.chunked:
        if _reads_whole(line):
            return True
        # Not a connection lost (the web server ended the chunks): the program behind it
        # stopped mid-line, or wrote a line no status word ends.
        log.warning(
            "ccnow.answer_cut",
            extra={"fields": {"framing": "chunked", "reason": "last line cut: no line end"}},
        )
    return False


def _reads_whole(line: str) -> bool:
    """Whether a last line without its line end reads as the line reader reads a whole one: an
    order line whose status is a documented word (data columns after it change nothing), or
    `message no_pending_orders`. A cut word (`pend`) is neither; nor is a status the document
    does not list, which may be the start of a longer one; nor an `error_message` line, whose
    words decide (`x_orderid_12 is not pending` cut to `x_orderid_1` would refuse another
    command, `... down for maintenance` cut before `maintenance` would refuse its own): an
    answer of error lines applied nothing, so posting it again is safe."""
    if line[: len(_ERROR_MESSAGE)].lower() == _ERROR_MESSAGE:
        return False
    first, *more = _BLANKS.split(line, maxsplit=1)
    rest = more[0] if more else ""
    if first.lower() == "message":
        return rest.lower() == NO_PENDING_ORDERS
    order_id = ccnow_id(first)
    if order_id is None or not rest:
        return False
    if _BLANKS.split(rest, maxsplit=1)[0].lower() == _ERROR_MESSAGE:
        return False
    order, _ = _order_line(order_id, rest, None)
    return order.status is not None and order.status in DOCUMENTED


def _open_line(reply: Reply) -> str | None:
    """Return the last line (trimmed) of a 200 answer that no Content-Length framed and no
    line end closes; None for any other answer, and for a page. Only its tail is decoded (a
    pending list may hold megabytes), and the body's head when it is no blank."""
    body = reply.body
    if reply.framed or reply.status != 200 or not body or body.endswith((b"\n", b"\r")):
        return None
    head = _text(body[:1024])
    if _is_page(head if head.strip() else _text(body)):
        return None
    # A line end is one byte in UTF-8, never a part of another character's bytes.
    start = max(body.rfind(b"\n"), body.rfind(b"\r")) + 1
    tail = _text(body) if start == 0 else body[start:].decode("utf-8", "surrogateescape")
    return tail.strip(_SPACE)


def undecided_line(reply: Reply) -> str | None:
    """Return the order id (hyphenated) of an answer's last line when it alone is undecided: a
    chunked answer without its final line end whose last line names a whole order id (the id,
    a blank, words), which may be a longer line cut short (`canceled_tmp` cut to `canceled`;
    `pending review` to `pending`). None for any other answer: whole, or cut where no order
    can be named (`is_complete`)."""
    line = _open_line(reply) if reply.chunked else None
    first, *more = _BLANKS.split(line or "", maxsplit=1)
    return ccnow_id(first) if more else None


def drop_undecided(reply: Reply, answer: Answer) -> tuple[Answer, OrderLine | None]:
    """Return an answer without its last line when that alone is undecided (`undecided_line`), and
    that line (None: none); ProtocolError: the parser did not read it last."""
    if (cut := undecided_line(reply)) is None:
        return answer, None
    if not answer.orders or answer.orders[-1].order_id != cut:
        raise ProtocolError("an answer's last line is not what its parser read last")
    return Answer(answer.orders[:-1], answer.messages), answer.orders[-1]


def read_complete(reply: Reply) -> bool:
    """`is_complete` for reads: an answer whose last line alone is undecided is read too."""
    return undecided_line(reply) is not None or is_complete(reply)


def by_id(answer: Answer) -> tuple[dict[str, OrderLine], set[str]]:
    """Return the last line per order id, and the ids whose lines disagree."""
    lines: dict[str, OrderLine] = {}
    disagreeing: set[str] = set()
    for line in answer.orders:
        previous = lines.get(line.order_id)
        if previous is not None and previous.status != line.status:
            disagreeing.add(line.order_id)
        lines[line.order_id] = line
    return lines, disagreeing
