"""CCNow's answers to an action's post that name no order's status: `error_message` lines
alone (a refusal), `message` lines (words about the post), and whether any line names an
order (the post may have run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reconciler.redact import SecretForms, mask, text_forms
from reconciler.sources.ccnow_answer import (
    BLANKS,
    ERROR_MESSAGE,
    LEADING_ID,
    LINE_END,
    MAX_TEXT_LENGTH,
    SPACE,
    answer_text,
    readable,
)


def refusal_lines(body: bytes, secrets: Sequence[str] = ()) -> list[str] | None:
    """Return the lines of an answer made of `error_message` lines alone: CCNow turned the whole
    post away, whatever its words say. None for any other answer. Each line masked and cut as
    a per-order error's words are."""
    return (
        _lines(
            body,
            secrets,
            lambda line: line[: len(ERROR_MESSAGE)].lower() == ERROR_MESSAGE,
            lambda line, forms: _whole_words(mask(line, forms), MAX_TEXT_LENGTH),
        )
        or None
    )


def _whole_words(text: str, limit: int) -> str:
    """Return `text` cut to `limit` characters without the word the cut lands in: its field
    names decide which commands are refused (`x_orderid_12` cut to `x_orderid_1` names
    another)."""
    head = text[:limit]
    if len(text) <= limit or text[limit] in SPACE:
        return head
    blank = max(head.rfind(" "), head.rfind("\t"))
    # No blank at all: the line's first word (`error_message...`) alone is whole.
    return head[: len(ERROR_MESSAGE)] if blank < 0 else head[:blank].rstrip(SPACE)


def message_lines(body: bytes, secrets: Sequence[str] = ()) -> list[str] | None:
    """Return the lines of an answer made of CCNow's `message` and `error_message` lines
    alone, at least one `message` (`message discount recorded`): CCNow's words about the post
    that name no order. None for any other answer. Each line masked and cut."""
    found = _lines(
        body,
        secrets,
        lambda line: BLANKS.split(line, maxsplit=1)[0].lower() in ("message", ERROR_MESSAGE),
        lambda line, forms: mask(line, forms, limit=MAX_TEXT_LENGTH),
    )
    if found is None or not any(line[:7].lower() == "message" for line in found):
        return None
    return found


def _lines(
    body: bytes,
    secrets: Sequence[str],
    keep: Callable[[str], bool],
    cut: Callable[[str, SecretForms | None], str],
) -> list[str] | None:
    """Return an answer's lines that are not blank, each masked and cut by `cut`, when `keep`
    takes every one of them; else None."""
    found, forms = [], text_forms(secrets)
    for raw in LINE_END.split(answer_text(body)):
        line = raw.strip(SPACE)
        if not line:
            continue
        if not keep(line):
            return None
        found.append(readable(cut(line, forms)))
    return found


def answered_orders(body: bytes) -> bool:
    """Return whether an answer has a line for an order, whatever else it holds (an action's
    post whose answer is an error may still have been applied to those orders): a line that
    starts with an order's id, as the reader of an action's answer takes one for that order's
    (`396-10-1142: pending`, a no-break space after the id, in UTF-8 or latin-1)."""
    # str.strip: every blank a first word was split off at before (a no-break space) too.
    return any(LEADING_ID.match(line.strip()) for line in LINE_END.split(answer_text(body)))


def error_line(body: bytes) -> bool:
    """Return whether an answer holds an `error_message` line (read as the strict reader reads
    one: its first word, in any case), as opposed to CCNow's `message` words alone beside the
    orders' lines: an answer's label says which came."""
    lines = (raw.strip(SPACE) for raw in LINE_END.split(answer_text(body)))
    return any(line[: len(ERROR_MESSAGE)].lower() == ERROR_MESSAGE for line in lines)
