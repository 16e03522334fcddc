"""CCNow's answers to an action's post that name no order's status: `error_message` lines
alone (a refusal), `message` lines (words about the post), and whether any line names an
order (the post may have run)."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.model import InvalidOrderId, normalize_ccnow_id
from reconciler.redact import mask, text_forms
from reconciler.sources.ccnow_answer import (
    _BLANKS,
    _ERROR_MESSAGE,
    _LINE_END,
    _SPACE,
    MAX_TEXT_LENGTH,
    _readable,
    _text,
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
        found.append(_readable(_whole_words(mask(line, forms), MAX_TEXT_LENGTH)))
    return found or None


def _whole_words(text: str, limit: int) -> str:
    """Return `text` cut to `limit` characters without the word the cut lands in: its field
    names decide which commands are refused (`x_orderid_12` cut to `x_orderid_1` names
    another)."""
    head = text[:limit]
    if len(text) <= limit or text[limit] in _SPACE:
        return head
    blank = max(head.rfind(" "), head.rfind("\t"))
    # No blank at all: the line's first word (`error_message...`) alone is whole.
    return head[: len(_ERROR_MESSAGE)] if blank < 0 else head[:blank].rstrip(_SPACE)


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
