"""Which of a CCNow command's own fields an answer's error line names (`x_tracknumber_1 is not a
tracking number`): the same command, sent again, would be refused the same way."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from reconciler.sources.ccnow_answer import field_of
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_send import FIELD

__all__ = ("carries", "names_own_field")

# CCNow's field names that are not our attributes' (the others are: `tracknumber`).
_ATTRIBUTE: Final[Mapping[str, str]] = {"orderid": "order_id"}


def carries(c: cmds.Command, field: re.Match[str]) -> bool:
    """Whether a command sends the field a FIELD match names (`amount_1` is no field of a
    tracking upload). CCNow's case is no part of the name (`X_AMOUNT`, `x_OrderId`)."""
    name, _ = field_of(field)
    return getattr(c, _ATTRIBUTE.get(name, name)) is not None


def names_own_field(c: cmds.Command, words: str | None) -> bool:
    """Whether error words (its order's line's) name a field the command sends, whatever
    number they give it: the line is its order's, and says so of it alone."""
    return words is not None and any(carries(c, m) for m in FIELD.finditer(words))
