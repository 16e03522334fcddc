"""What the receiver reads from a provider's notification before it checks anything: the
account, kind, value and signature in a CCV path, the account and token in a CCNow path (matched
by their last segments), and the CCNow order ids a body mentions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from ..key_fold import fold
from ..model import CCNOW_ID_PATTERN

MAX_HINTS = 100  # CCNow order ids taken from one notification
MAX_PENDING_HINTS = 1_000  # CCNow order ids per account waiting for the next poll

# An id stands alone: no digit, hyphen, ASCII letter or underscore next to it (`x710000002`,
# `7100000021` and `710-00-0003-9` hold none).
_CCNOW_ID_HINT = re.compile(rf"(?<![0-9A-Za-z_-]){CCNOW_ID_PATTERN}(?![0-9A-Za-z_-])", re.ASCII)
_CCNOW_ID_LINE = re.compile(CCNOW_ID_PATTERN, re.ASCII)
# A form's fields are split by `&`; a body that puts them on lines of their own, or after a
# blank (`order=710000002 amount=100000000`), would otherwise read the rest as the first one's
# value (and an amount as an order's id).
_FIELD_BREAK = re.compile(r"[\r\n]+|[ \t]+(?=[A-Za-z_][\w.\-\[\]]*=)")
# An order's id by name: `order`, `orders`, `orderid`, `order_no`, `x_orderid_1`, `ordernum`.
_ORDER_ID_NAME = re.compile(
    r"(?:x_)?ord(?:er)?s?(?:[_ .\-]?(?:id|ids|num|number|numbers|no|nr|#))?(?:_?[0-9]+)?",
    re.ASCII,
)
# The keys of an order's object that hold its id: `{"order": {"id": ...}}`.
_ID_KEYS = frozenset({"id", "number", "num", "no", "nr"})


@dataclass(frozen=True, slots=True)
class CCNowHints:
    """The CCNow order ids a notification's body holds, hyphenated, each once."""

    named: list[str]  # in a field named for an order, or the whole body: may start following
    mentioned: list[str]  # elsewhere (an amount, a note): asked only of orders followed already

    @property
    def ids(self) -> list[str]:
        return [*self.named, *self.mentioned]


@dataclass(frozen=True, slots=True)
class CCVPath:
    """`.../notify/ccv/{account}/{kind}/{value}/{sig}`, segments still percent-encoded."""

    account: str
    kind: str
    value: str
    sig: str


@dataclass(frozen=True, slots=True)
class CCNowPath:
    """`.../notify/ccnow/{account}/{token}`, segments still percent-encoded."""

    account: str
    token: str


def parse_notify_path(raw_path: str) -> CCVPath | CCNowPath | None:
    """Match a raw request path by its last segments, whatever prefix a proxy left in front."""
    segments = raw_path.partition("?")[0].split("/")
    if len(segments) >= 7 and segments[-6] == "notify" and segments[-5] == "ccv":
        return CCVPath(*segments[-4:])
    if len(segments) >= 5 and segments[-4] == "notify" and segments[-3] == "ccnow":
        return CCNowPath(*segments[-2:])
    return None


def decode_segment(segment: str) -> str | None:
    """Percent-decode one path segment once; None when empty or not valid UTF-8."""
    try:
        text = unquote(segment, errors="strict")
        # Raw non-UTF-8 bytes in the request line arrive as lone surrogates.
        text.encode("utf-8")
    except UnicodeError:
        return None
    return text or None


def add_hints(pending: dict[str, bool], hints: Sequence[tuple[str, bool]]) -> None:
    """Add CCNow ids to an account's pending hints; named once is named (may start following).
    Past MAX_PENDING_HINTS a new id is dropped; the pending-list poll still runs."""
    for order_id, is_named in hints:
        if order_id in pending:
            pending[order_id] = pending[order_id] or is_named
        elif len(pending) < MAX_PENDING_HINTS:
            pending[order_id] = is_named


def extract_ccnow_ids(body: bytes) -> list[str]:
    """Return every CCNow order id a notification body holds, named ones first."""
    return read_ccnow_hints(body).ids


def read_ccnow_hints(body: bytes) -> CCNowHints:
    """Read the CCNow order ids of a notification body, a form, JSON or text: CCNow documents
    no layout, so only an id in a field whose name holds `order`, or a body of id lines alone,
    may make an order followed (an amount's nine digits once did); at most MAX_HINTS ids."""
    named: dict[str, None] = {}
    mentioned: dict[str, None] = {}
    for is_named, text in _pieces(body.decode("utf-8-sig", errors="replace")):
        for match in _CCNOW_ID_HINT.finditer(text):
            order_id = "-".join(match.groups())
            if is_named:
                named[order_id] = None
            else:
                mentioned[order_id] = None
    kept = list(named)[:MAX_HINTS]
    rest = [i for i in mentioned if i not in named][: MAX_HINTS - len(kept)]
    return CCNowHints(kept, rest)


def _pieces(text: str) -> Iterator[tuple[bool, str]]:
    """Yield the body's texts, each with whether it names orders: a JSON object or array's
    keys and values, a form's names and values, or the text whole."""
    document = _json(text)
    if document is not None:
        yield from _json_pieces(document)
    elif "=" in text:
        for field in _FIELD_BREAK.split(text):
            for name, value in parse_qsl(field, keep_blank_values=True, errors="replace"):
                yield False, name
                yield _names_orders(name), value
    else:
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if line]
        whole = bool(lines) and all(_CCNOW_ID_LINE.fullmatch(line) for line in lines)
        yield whole, text


class _Object(list[tuple[str, object]]):
    """A JSON object's pairs, all of them: a key given twice keeps both values."""


def _json(text: str) -> _Object | list[object] | None:
    """Return the body's JSON object or array; None when it holds neither. Numbers stay the
    text they were written as (an id sent as a number is read as its digits)."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        document = json.loads(
            text,
            object_pairs_hook=_Object,
            parse_int=str,
            parse_float=str,
            parse_constant=lambda _: None,
        )
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return None
    return document if isinstance(document, list) else None  # _Object is a list too


def _json_pieces(document: _Object | list[object]) -> Iterator[tuple[bool, str]]:
    """Yield a JSON document's keys and scalar values, at any depth. A value names orders
    when the key that holds it does, itself or as the list it stands in (`{"order_ids":
    [...]}`), or is an id key of an object an order's key holds (`{"order": {"id": ...}}`,
    `{"orders": [{"id": ...}]}`; not its `amount`). A top-level array's values have no key."""
    stack: list[tuple[bool, object]] = [(False, document)]
    while stack:
        is_named, value = stack.pop()
        if isinstance(value, _Object):
            # An object an order's key holds (`{"orders": [{"id": ...}]}`) names by its id keys.
            for key, item in reversed(value):
                named = _names_orders(key) or (is_named and fold(key.strip()) in _ID_KEYS)
                stack.append((named, item))
                stack.append((False, key))
        elif isinstance(value, list):
            stack.extend((is_named, item) for item in reversed(value))
        elif isinstance(value, str):
            yield is_named, value


def _names_orders(name: str) -> bool:
    """Whether a form field or JSON key is named for an order's id (`order_number`,
    `x_orderid_1`, `OrderNo`), not for another of its figures (`order_total`, `order_date`)."""
    return _ORDER_ID_NAME.fullmatch(fold(name.strip())) is not None
