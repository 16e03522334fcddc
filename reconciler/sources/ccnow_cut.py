"""An answer's last line without its line end: whole, cut short on the way (asked again), or
undecided (read without its last line, whose order is asked again alone)."""

from __future__ import annotations

import re
from dataclasses import replace

from reconciler.model import ccnow_id
from reconciler.sources.ccnow_answer import (
    BLANKS,
    DOCUMENTED,
    DOCUMENTED_BY_LOWER,
    ERROR_MESSAGE,
    NO_PENDING_ORDERS,
    SPACE,
    Answer,
    OrderLine,
    answer_text,
    is_page,
    log,
    order_line,
)
from reconciler.sources.errors import ProtocolError
from reconciler.sources.http import Reply

# What an order id (model.CCNOW_ID_PATTERN: 3, 2 and 4 digits, hyphens between optional)
# starts with, cut short (`100-00-`, `1000000`): no whole id. A test holds it to the model's
# pattern, prefix by prefix.
ID_START = re.compile(r"[0-9]{1,3}(?:-?(?:[0-9]{1,2}(?:-?[0-9]{0,3})?)?)?", re.ASCII)


def is_complete(reply: Reply) -> bool:
    """Whether an answer arrived whole: one whose Content-Length it matched did (aiohttp
    raises on one that ends short), with or without a final line end (CCNow may omit it),
    unless its last line is plainly cut (`_cut_word`); any other 200 body ends with a line
    end, as every line does; or, chunked, its last line reads as a whole line (`_reads_whole`:
    a CGI behind a web server is chunked, and the document does not promise a final line end).

    A connection closed mid-answer leaves the last line cut, and a cut word (`pend`) would
    read as a status; so does a CGI that dies mid-line behind a web server, which still ends
    its chunked answer cleanly (or frames what it got). Such an answer is a transport failure,
    and retried. A page is no answer, whole or not: `parse_answer` says so (`html page`), with
    no retry.
    """
    return _complete(reply, _open_line(reply))


def _complete(reply: Reply, line: str | None) -> bool:
    """`is_complete` of an answer whose open last line (`_open_line`) is `line`."""
    if line is None:
        return True
    if reply.framed:
        if not _cut_word(line):
            return True
        framing, reason = "content-length", "last line cut: a status word's start"
    elif reply.chunked:
        if _reads_whole(line):
            return True
        # Not a connection lost (the web server ended the chunks): the program behind it
        # stopped mid-line, or wrote a line no status word ends.
        framing, reason = "chunked", "last line cut: no line end"
    else:
        return False
    log.warning("ccnow.answer_cut", extra={"fields": {"framing": framing, "reason": reason}})
    return False


def _cut_word(line: str) -> bool:
    """Whether a framed answer's last line, without its line end, is an order line whose status
    word is the start of a documented one (`pendi` of `pending`, in any case) and no whole
    one: a word cut short, never a status CCNow has (a word the document does not list is
    kept as it comes, and this one would raise a change `pending -> pendi` and back)."""
    first, rest = _first_word(line)
    return ccnow_id(first) is not None and bool(rest) and word_start(_first_word(rest)[0])


def word_start(word: str) -> bool:
    """Whether `word` is the start of a documented status word (in any case) and no whole one."""
    word = word.lower()
    return word not in DOCUMENTED_BY_LOWER and any(w.startswith(word) for w in DOCUMENTED_BY_LOWER)


def _reads_whole(line: str) -> bool:
    """Whether a last line without its line end reads as the line reader reads a whole one: an
    order line whose status is a documented word (data columns after it change nothing), or
    `message no_pending_orders`. A cut word (`pend`) is neither; nor is a status the document
    does not list, which may be the start of a longer one; nor an `error_message` line, whose
    words decide (`x_orderid_12 is not pending` cut to `x_orderid_1` would refuse another
    command, `... down for maintenance` cut before `maintenance` would refuse its own): an
    answer of error lines applied nothing, so posting it again is safe."""
    if line[: len(ERROR_MESSAGE)].lower() == ERROR_MESSAGE:
        return False
    first, rest = _first_word(line)
    if first.lower() == "message":
        return rest.lower() == NO_PENDING_ORDERS
    order_id = ccnow_id(first)
    if order_id is None or not rest:
        return False
    if _first_word(rest)[0].lower() == ERROR_MESSAGE:
        return False
    order = order_line(order_id, rest, None)
    return order.status is not None and order.status in DOCUMENTED


def _open_line(reply: Reply) -> str | None:
    """Return the last line (trimmed) of a 200 answer that no line end closes; None for any
    other answer, and for a page. Only its tail is decoded (a pending list may hold
    megabytes), and the body's head when it is no blank."""
    body = reply.body
    if reply.status != 200 or not body or body.endswith((b"\n", b"\r")):
        return None
    head = answer_text(body[:1024])
    if is_page(head if head.strip() else answer_text(body)):
        return None
    # A line end is one byte in UTF-8, never a part of another character's bytes.
    start = max(body.rfind(b"\n"), body.rfind(b"\r")) + 1
    tail = answer_text(body) if start == 0 else body[start:].decode("utf-8", "surrogateescape")
    return tail.strip(SPACE)


def _first_word(line: str) -> tuple[str, str]:
    """Return a line's first word (an order id, `message`) and what follows it ("": none)."""
    first, *more = BLANKS.split(line, maxsplit=1)
    return first, more[0] if more else ""


def undecided_line(reply: Reply) -> str | None:
    """Return the order id (hyphenated) of an answer's last line when it alone is undecided
    for reads and writes alike: a chunked answer without its final line end whose last line
    names a whole order id (the id, a blank, words), which may be a longer line cut short
    (`canceled_tmp` cut to `canceled`; `pending review` to `pending`). None for any other
    answer: whole, or cut where no order can be named (`is_complete`)."""
    return _undecided(reply, _open_line(reply) if reply.chunked else None, reads=False)


def _undecided(reply: Reply, line: str | None, *, reads: bool) -> str | None:
    if line is None or not (reply.chunked or (reads and reply.framed and _cut_word(line))):
        return None
    first, rest = _first_word(line)
    return ccnow_id(first) if rest else None


def drop_line(answer: Answer, cut: str | None) -> tuple[Answer, OrderLine | None]:
    """Return an answer without its last line when that alone is undecided (`cut`: its order,
    from `undecided_line` or `read_last_line`), and that line (None: none); ProtocolError: the
    parser did not read it last."""
    if cut is None:
        return answer, None
    if not answer.orders or answer.orders[-1].order_id != cut:
        raise ProtocolError("an answer's last line is not what its parser read last")
    # replace: the pending list's skipped lines are still its answer's (their warning).
    return replace(answer, orders=answer.orders[:-1]), answer.orders[-1]


def _cut_id(reply: Reply, line: str | None, *, query: bool) -> tuple[bytes, str | None] | None:
    """For reads, of an answer whose open last line (`_open_line`) is `line`: a chunked answer
    whose last line, without its line end, is an order id alone, cut just after it
    (`100-00-0005 `) or, a query's, in it (`100-00-`): the body without that
    line, and its order, undecided (asked again alone, as for a cut word; None: cut mid-id,
    the lines before it read, if any, and the orders it left out asked again). None for any other
    answer. Such a cut failed the whole batch after its retries (a truncated answer),
    throwing away the lines read, and the account when it was the only batch."""
    if not reply.chunked or not line:
        return None
    first, rest = _first_word(line)
    order_id = None if rest else ccnow_id(first)
    if rest or (order_id is None and not (query and ID_START.fullmatch(first))):
        return None
    start = max(reply.body.rfind(b"\n"), reply.body.rfind(b"\r")) + 1
    # Cut mid-id with no line before it reads nothing, as an empty answer: the batch's orders
    # are asked again as any that answered none, so a CGI that always dies at one order's id
    # fails that order alone (`missing`); a truncated answer failed its whole batch after
    # its retries every pass, the account with it when it was the only batch.
    return reply.body[:start], order_id


def read_complete(reply: Reply, *, query: bool = False) -> bool:
    """`is_complete` for reads: an answer whose last line alone is undecided is read too, and
    one cut at an order id (`_cut_id`; `query`: a query's, not the pending list's)."""
    line = _open_line(reply)  # once for all three
    return (
        _undecided(reply, line, reads=True) is not None
        or _cut_id(reply, line, query=query) is not None
        or _complete(reply, line)
    )


class ListCuts:
    """`read_complete` for one read of the pending list, which also takes an answer cut in an
    order's id (`100-00-`, chunked) the second time it comes cut at the same byte: a CGI dying
    there at every read, not a connection lost (that is asked again, as before). Its lines
    before the cut are read, the cut one skipped as a line no order can be read from
    (`Answer.skipped`): an order past it is queried when it left the list, as any other (was:
    the list failed after its retries at every poll, the account failed for good)."""

    def __init__(self) -> None:
        self._cut: bytes | None = None

    def __call__(self, reply: Reply) -> bool:
        if read_complete(reply):
            return True
        line = _open_line(reply)
        first, rest = _first_word(line or "")
        if not (reply.chunked and line) or rest or not ID_START.fullmatch(first):
            return False
        again, self._cut = reply.body == self._cut, reply.body
        return again


def read_last_line(
    reply: Reply, *, query: bool
) -> tuple[tuple[bytes, str | None] | None, str | None]:
    """`_cut_id` of a read's answer and, when that is None, the order of its last line when
    that alone is undecided: `undecided_line`'s, and a framed answer's last line whose status
    word is the start of a documented one (`_cut_word`: `complete` may be `completed` cut, or
    a word of CCNow's own, and asking the whole batch again would get it again; an action's
    post is a lost answer then, `is_complete`). Its open last line is decoded once here (a
    pending list may hold megabytes)."""
    line = _open_line(reply)
    cut_at_id = _cut_id(reply, line, query=query)
    if cut_at_id is not None:
        return cut_at_id, None
    framing = reply.chunked or reply.framed
    return None, _undecided(reply, line if framing else None, reads=True)
