"""CCNow's answer lines read strictly: order lines, `message` lines, `error_message` lines."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from reconciler.logs import fields
from reconciler.model import CCNOW_ID_PATTERN, ccnow_id, hyphenated_match, same_status
from reconciler.redact import SecretForms, holds_secret, mask, text_forms
from reconciler.sources.ccnow_words import DOCUMENTED as DOCUMENTED
from reconciler.sources.ccnow_words import DOCUMENTED_BY_LOWER as DOCUMENTED_BY_LOWER
from reconciler.sources.ccnow_words import is_data
from reconciler.sources.errors import (
    AuthenticationFailed,
    ProtocolError,
    SourceError,
    SourceUnavailable,
)

log = logging.getLogger("reconciler.sources.ccnow")

# The provider's own words go into exception texts, but only this many of them.
MAX_TEXT_LENGTH = 200
MAX_STATUS_LENGTH = 64
# Order ids a log line names, at most.
LOGGED_IDS = 10

# ASCII only: other scripts' letters are not status words, other blanks do not separate words.
_STATUS = re.compile(r"[A-Za-z0-9_-]+(?:[ \t]+[A-Za-z0-9_-]+)*", re.ASCII)
BLANKS = re.compile(r"[ \t]+")
SPACE = " \t\f\v"
# Lines may end in CR LF, LF, or a bare CR (old Mac style); each is a line end.
LINE_END = re.compile(r"\r\n|\r|\n")
_ERROR_WORDS = frozenset({"error", "error_message", "invalid", "not_found", "unknown"})
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
ERROR_MESSAGE = "error_message"


def field_names(names: str) -> re.Pattern[str]:
    """CCNow's fields `names` (`orderid|action`) as its error lines write them, in any case:
    with their `x_` (`x_amount`), numbered (`x_amount_1`, `amount_1`: the order or command at
    that place in the post), or both; a bare word (`action not performed`) is English. Read a
    match with `field_of`. Nine digits at most: a longer number is no place in a post, and a
    query's answer lines are not cut (int() refuses a number of thousands of digits)."""
    return re.compile(_field_pattern(names), re.I)


def _field_pattern(names: str) -> str:
    return rf"\b(?=x_|(?:{names})_[0-9])(?:x_)?({names})(?:_([0-9]{{1,9}}))?\b"


def field_of(match: re.Match[str]) -> tuple[str, int | None]:
    """Return a `field_names` match's field (lower case, without `x_`) and its number."""
    number = match.group(2)
    return match.group(1).lower(), None if number is None else int(number)


# How an error line names an order a query asked: by its fields' number (`x_orderid_2`,
# `x_action_2`: the second order asked) or by its id (hyphens or not, no digit either side).
_FIELD_NUMBER = field_names("orderid|action")
# The field or the id an owned error line starts with: its words follow (`x_orderid_2 not
# found`, `500-00-0002 not found`).
_LEADING_NAME = re.compile(
    rf"^[\s:]*(?:{_field_pattern('orderid|action')}|(?<![0-9]){CCNOW_ID_PATTERN}(?![0-9]))[\s:]*",
    re.I | re.ASCII,
)
_ID_IN_TEXT = re.compile(r"(?<![0-9])" + CCNOW_ID_PATTERN + r"(?![0-9])", re.ASCII)
# An order's id a line starts with, whatever follows it (`500-00-0002: mark_shipped`, a no-break
# space): that order's line, if no status can be read from it.
LEADING_ID = re.compile(CCNOW_ID_PATTERN + r"(?![0-9])", re.ASCII)
# What an error line naming one order says of the account or of our post, not of that order
# (`x_orderid_1 account suspended`, `x_action_1 unknown action`: every order's post would get
# it), besides CCNow down and our credentials: the account's, unless it says that order is
# unknown (`x_orderid_2 invalid order for this account`).
# Phrases, not parts of words: `order cancelled by merchant`, `refunded to customer account`,
# `accounting hold` are that order's. After `account` a `:` and up to three words may come
# (`account: suspended`, `account status: suspended`, `account has been permanently closed`),
# but not `not` (`account is not suspended`), `order` or a word joining another clause
# (`account then order closed`, `refunded to customer account and closed`: that order's
# state); a listed set of words let through `account has been suspended` and missed
# `account has been permanently closed`.
_BETWEEN = r"(?:(?:is|has|been|was|currently|temporarily|now)\s+){0,3}"
_ACCOUNT_BETWEEN = r"(?::\s*|\s+)(?:(?!(?:not|orders?|and|or|then|but|to|already)\b)\w+:?\s+){0,3}"
_ACCOUNT_STATE = r"(?:suspended|disabled|locked|closed|inactive|not\s+(?:currently\s+)?active)"
_ACCOUNT_WORDS = re.compile(
    rf"\baccount{_ACCOUNT_BETWEEN}{_ACCOUNT_STATE}\b"
    r"|\b(?:suspended|disabled|inactive|locked|closed)\s+(?:merchant\s+)?account\b"
    rf"|\bmerchant\s+(?:account\s+)?{_BETWEEN}(?:not\s+active|inactive|suspended|disabled)\b"
    r"|\b(?:unknown|invalid|unsupported|bad)\s+action\b"
    r"|\baction\s+(?:unknown|invalid|unsupported)\b",
    re.I,
)
NO_PENDING_ORDERS = "no_pending_orders"
UNREADABLE = "unreadable status"


class EmptyAnswer(ProtocolError):
    """An answer of no line at all (blank lines only)."""


class OddLines(ProtocolError):
    """A query's answer holding `odd` lines no order or word can be read from, besides the
    lines that read (`answer`; None with a `message` that would fail the account)."""

    def __init__(self, message: str, answer: Answer | None = None, odd: int = 1) -> None:
        super().__init__(message)
        self.answer, self.odd = answer, odd


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
    # Columns after its documented status were left out (`pending E42`): no part of what a poll
    # compares (`pending 2026-11-30` and `pending` are one answer); an action's answer reads it.
    cut: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Answer:
    """A well-formed CCNow answer: its order lines in answer order, and `message` texts."""

    orders: tuple[OrderLine, ...]
    messages: tuple[str, ...]
    skipped: int = 0  # the pending list's lines no order or word could be read from


def readable(text: str) -> str:
    """Return provider text with the bytes that were not UTF-8 shown as U+FFFD: a lone
    surrogate cannot be encoded into a log line, an event or the database."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _quote(raw_line: str, forms: SecretForms | None, *, drop: str = "", limit: int) -> str:
    """Return provider text to quote in an error: masked first (as it came, so that no blank
    a secret begins with is lost), then trimmed, without its first word `drop`, and cut."""
    text = readable(mask(raw_line.rstrip(SPACE), forms)).lstrip(SPACE)
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


def order_line(order_id: str, rest: str, forms: SecretForms | None) -> OrderLine:
    """Read what follows an order id: a status (a documented word in the document's case,
    any other verbatim), or a per-order error. Columns left out after a documented status
    word: its `cut`."""
    first, *more = BLANKS.split(rest, maxsplit=1)
    word = first.lower()
    if word in _ERROR_WORDS:
        error = readable(mask(rest, forms, limit=MAX_TEXT_LENGTH))
        after = _LEADING_NAME.sub("", more[0] if more else "")
        not_found = word == _NOT_FOUND_WORD or (word == ERROR_MESSAGE and says_not_found(after))
        return OrderLine(order_id, None, error, not_found=not_found)
    if word in DOCUMENTED_BY_LOWER and (not more or is_data(more[0])):
        return OrderLine(order_id, DOCUMENTED_BY_LOWER[word], cut=bool(more))
    # A status of several words (`on hold`) is one status, kept verbatim (NOTES), not cut: its
    # inner blanks as CCNow wrote them (`On  Hold`); only the line's ends were trimmed.
    if len(rest) > MAX_STATUS_LENGTH or not _STATUS.fullmatch(rest) or holds_secret(rest, forms):
        # Not a word a log line and a database can keep as it is (nor one that echoes our
        # password, which would be kept verbatim): this order's failure alone, never its
        # batch's (its id is one the account knows).
        return OrderLine(order_id, None, UNREADABLE, unreadable=True)
    return OrderLine(order_id, rest)


def says_down(line: str) -> bool:
    """Whether an error line says CCNow is down (`system down for maintenance`, the document's
    example; `Service Unavailable`, `try again later`): such a line decides nothing, whatever
    field it names, and starts no day (writes/ccnow_outcome.py bounds it otherwise)."""
    return _DOWN.search(line) is not None


def speaks_ccnow(body: bytes) -> bool:
    """Whether an answer holds a line of CCNow's protocol (an order's line, a `message` or an
    `error_message`), not only a page or a gateway's words."""
    for raw in LINE_END.split(answer_text(body)):
        first = BLANKS.split(raw.strip(SPACE), maxsplit=1)[0]
        if first.lower() in ("message", ERROR_MESSAGE) or ccnow_id(first) is not None:
            return True
    return False


def answer_text(body: bytes | str) -> str:
    """Return an answer's body as text, each byte that is not UTF-8 a lone surrogate."""
    # utf-8-sig: a byte order mark is not worth failing the source for. A byte that is not
    # UTF-8 (an old CGI's latin-1) is kept as a lone surrogate: the line holding it is that
    # order's failure alone (no status word matches it), never the whole answer's.
    return body.decode("utf-8-sig", "surrogateescape") if isinstance(body, bytes) else body


def is_page(text: str) -> bool:
    """Whether an answer is a page (HTML), decided by the body, whatever the Content-Type
    says: a page is never an answer."""
    return text.lstrip().startswith("<")


def _owner(line: str, asked: Sequence[str]) -> str | None:
    """Return the one asked order an error line names, when it is about that order alone: not
    when it names none or several, nor when it says CCNow is down or names our credentials
    (`x_orderid_2 login failed`), or the account or our post (`_ACCOUNT_WORDS`), which are
    the account's."""
    numbers = (n for m in _FIELD_NUMBER.finditer(line) if (n := field_of(m)[1]) is not None)
    named = {asked[n - 1] for n in numbers if 0 < n <= len(asked)}
    named.update(i for m in _ID_IN_TEXT.finditer(line) if (i := hyphenated_match(m)) in asked)
    if len(named) != 1 or _OUTAGE_WORDS.search(line) or says_down(line):
        return None
    if _AUTH_WORDS.search(line):
        return None
    words = _LEADING_NAME.sub("", line[len(ERROR_MESSAGE) :])
    if _ACCOUNT_WORDS.search(line) and not says_not_found(words):
        return None
    return named.pop()


def parse_answer(
    body: bytes | str,
    *,
    secrets: Sequence[str] = (),
    asked: Sequence[str] | None = None,
) -> Answer:
    """Parse an answer strictly: an `error_message` or anything off the protocol raises.

    `asked`: the orders a poll's query asked (hyphenated, in field order; none: the pending
    list). An error line naming one of them, and a line that starts with one's id but reads
    no further, are that order's line (NOTES: per-order error lines inside a batch answer);
    the pending list's unreadable lines are skipped (`skipped`) when others read. None (an
    action's post, whose answer says what was applied): nothing is tolerated.

    Provider text quoted in an error is masked for `secrets` (in any encoding) before it is cut.
    """
    text, forms = answer_text(body), text_forms(secrets)
    if is_page(text):
        raise ProtocolError("html page")
    # (as received, trimmed) per line that is not blank
    lines = [(raw, line) for raw in LINE_END.split(text) if (line := raw.strip(SPACE))]
    if not lines:
        raise EmptyAnswer("empty answer")
    # An error anywhere makes the whole answer an error, whatever else it contains, but one
    # about an asked order alone: else that order's trouble fails its whole batch, poll after
    # poll, and the account with it, while its one-order probe answers.
    owners: dict[int, str] = {}
    for number, (raw, line) in enumerate(lines, 1):
        if line[: len(ERROR_MESSAGE)].lower() == ERROR_MESSAGE:
            if (owner := _owner(line, asked or ())) is None:
                raise _error_answer(ERROR_MESSAGE, raw, forms)
            owners[number] = owner

    orders: list[OrderLine] = []
    messages: list[str] = []
    unknown: str | None = None
    extra_columns: list[str] = []
    unread: str | None = None  # the pending list's first line skipped
    skipped = 0
    for number, (raw, line) in enumerate(lines, 1):
        first, *more = BLANKS.split(line, maxsplit=1)
        rest = more[0] if more else ""
        if number in owners:
            orders.append(order_line(owners[number], line, forms))
        elif first.lower() == "message":
            messages.append(rest)
            # `no_pending_orders` is the one documented message; any other may say the account
            # is locked or the list unavailable, never that nothing is pending.
            if rest.lower() != NO_PENDING_ORDERS and unknown is None:
                unknown = raw
        elif rest and (order_id := ccnow_id(first)) is not None:
            order = order_line(order_id, rest, forms)
            orders.append(order)
            if order.cut:
                extra_columns.append(order_id)
        elif asked and (m := LEADING_ID.match(line)) and hyphenated_match(m) in asked:
            # `500-00-0002: mark_shipped`: no status of the order it names (one asked).
            orders.append(OrderLine(hyphenated_match(m), None, UNREADABLE, unreadable=True))
        else:
            shown = _quote(raw, forms, limit=40)
            unread = unread or f"line {number}: not an answer line: {shown!r}"
            if asked is None:
                raise ProtocolError(unread)
            # A pending list line no order can be read from (`5000000050 pending`) hides no
            # order's change: one missing from the list is queried, never taken as changed.
            skipped += 1
    if unread is not None and not orders and not messages:
        raise ProtocolError(unread)
    if unread is not None and asked:  # the lines that read kept: a stray line (ccnow_levels.py)
        kept = None if unknown is not None else Answer(tuple(orders), tuple(messages))
        raise OddLines(unread, kept, skipped)
    if unknown is not None:
        raise _error_answer("message", unknown, forms)
    if extra_columns:
        # Once per answer: a layout CCNow changed shows on every line of every poll.
        log.debug(
            "ccnow.extra_columns_ignored",
            extra=fields(count=len(extra_columns), order_ids=extra_columns[:LOGGED_IDS]),
        )
    return Answer(tuple(orders), tuple(messages), skipped)


def same_answer(one: OrderLine, other: OrderLine, *, words: bool = True) -> bool:
    """Whether two lines for one order (its id read with or without hyphens) are one answer:
    the same status, a word CCNow does not document in another case too (`Pending_Review`,
    `pending_review`), or the same error words but for case and blanks. The one rule by which
    the polls and the actions' answers both read an order's several lines. Without `words`
    (a poll, whose outcome an error line decides only by what it means: not found, unreadable
    or the order's failure), two error lines meaning the same in other words agree (`unknown
    order`, `x_orderid_1 order not found`): an action's field-naming lines differ by them."""
    if not same_status(one.status, other.status):
        return False
    return one.status is not None or (
        (not words or _said(one.error) == _said(other.error))
        and (one.not_found, one.unreadable) == (other.not_found, other.unreadable)
    )


def _said(words: str | None) -> str | None:
    return None if words is None else " ".join(BLANKS.split(words.strip(SPACE))).lower()


def by_id(answer: Answer, *, words: bool = True) -> tuple[dict[str, OrderLine], set[str]]:
    """Return the last line per order id, and the ids whose lines disagree (`same_answer`):
    two different error lines for one order do, statuses differing only by case do not."""
    lines: dict[str, OrderLine] = {}
    disagreeing: set[str] = set()
    for line in answer.orders:
        previous = lines.get(line.order_id)
        if previous is not None and not same_answer(previous, line, words=words):
            disagreeing.add(line.order_id)
        lines[line.order_id] = line
    return lines, disagreeing
