"""Which of a CCNow command's own fields an answer's error line names (`x_tracknumber_1 is not a
tracking number`): the same command, sent again, would be refused the same way; and so which
answer line is each command's."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from reconciler.sources.ccnow_answer import Answer, OrderLine, by_id, field_of
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_outcome import lines_by_id
from reconciler.writes.ccnow_send import FIELD

__all__ = ["carries", "lines_of", "names_own_field"]

# CCNow's field names that are not our attributes' (the others are: `tracknumber`).
_ATTRIBUTE = {"orderid": "order_id"}


def carries(c: cmds.Command, field: re.Match[str]) -> bool:
    """Whether a command sends the field a FIELD match names (`amount_1` is no field of a
    tracking upload). CCNow's case is no part of the name (`X_AMOUNT`, `x_OrderId`)."""
    name, _ = field_of(field)
    return getattr(c, _ATTRIBUTE.get(name, name)) is not None


def names_own_field(c: cmds.Command, words: str | None) -> bool:
    """Whether error words (its order's line's) name a field the command sends, whatever
    number they give it: the line is its order's, and says so of it alone."""
    return words is not None and any(carries(c, m) for m in FIELD.finditer(words))


def lines_of(answer: Answer, batch: Sequence[cmds.Command]) -> dict[int, OrderLine | None]:
    """Return each command's answer line (None: no line, or lines that disagree): its order's
    (`lines_by_id`). But where several commands of one order share the post (tracking uploads),
    an error line naming a numbered field one of them sends (`x_tracknumber_2`) is that one's
    alone, and the others have the order's lines that name none of them."""
    by_order = lines_by_id(answer)
    lines = {c.id: by_order.get(c.order_id) for c in batch}
    shared = {o for o, n in Counter(c.order_id for c in batch).items() if n > 1}
    own: dict[int, list[OrderLine]] = {}
    others: dict[str, list[OrderLine]] = {}
    for line in (x for x in answer.orders if x.order_id in shared):
        named = _numbered(line, batch)
        for c in named:
            own.setdefault(c.id, []).append(line)
        if not named:
            others.setdefault(line.order_id, []).append(line)
    # An order none of whose lines names one of its commands by number (`invalid
    # x_tracknumber`, or the number of another order's command) cannot tell them apart: each
    # has the order's line, which refuses them all when it names the field they send.
    told = {c.order_id for c in batch if c.id in own}
    for c in (c for c in batch if c.order_id in told):
        lines[c.id] = _agreed(own.get(c.id) or others.get(c.order_id, []))
    return lines


def _numbered(line: OrderLine, batch: Sequence[cmds.Command]) -> list[cmds.Command]:
    """The commands of a line's order an error line names by a numbered field they send."""
    named = []
    for m in FIELD.finditer(line.error or "") if line.status is None else ():
        _, number = field_of(m)
        if number is not None and 1 <= number <= len(batch):
            c = batch[number - 1]
            if c.order_id == line.order_id and carries(c, m) and c not in named:
                named.append(c)
    return named


def _agreed(lines: Sequence[OrderLine]) -> OrderLine | None:
    """The one answer lines give, by the polls' rule (`by_id`); None: none, or they disagree."""
    kept, disagreeing = by_id(Answer(tuple(lines), ()))
    return None if disagreeing or not kept else next(iter(kept.values()))
