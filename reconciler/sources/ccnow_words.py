"""The words of CCNow's status lines: its documented status words, and what may follow one in
an answer line as columns of data rather than as words of a status of its own."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from reconciler.model import known_statuses

# CCNow's documented status words. One in any case (`MARK_SHIPPED`) is that word: stored as written,
# a later answer in the document's case would raise a change that is none, and a word in capitals
# would never count as settled. Followed by columns of data only (`pending\tUSD`, `MARK_SHIPPED
# 2026-11-30`, `pending 2026-11-30 12.50`) it names the status: else each new column would read as
# another status. Followed by any other word (`pending review`, `pending ERROR`, `completed
# FRAUD`, `pending ERR42`), it may be a new status or say the order failed: kept whole, as
# written, as every word the document does not list is. A word is never guessed to be data from
# its look alone.
DOCUMENTED = frozenset(known_statuses("ccnow"))
# A documented word by its lower case: CCNow answers them in any case.
DOCUMENTED_BY_LOWER: Final[Mapping[str, str]] = {word.lower(): word for word in DOCUMENTED}
_DIGIT = re.compile(r"[0-9]")
# The words a column of data may be, in any case: the currencies an order's amount is in and
# the carriers a shipment goes by (the document names `Fedex, DHL`). A listed code, not any
# short word in capitals: `ERROR`, `FAIL`, `NO`, `VOID`, `HOLD` look the same and say how the
# order stands. `NOK` (Norway's krone) is left out on purpose: it reads `not OK` as well.
DATA_CODES = frozenset(
    {"usd", "eur", "gbp", "cad", "aud", "nzd", "jpy", "chf", "sek", "dkk", "mxn"}
    | {"ups", "usps", "fedex", "dhl", "tnt"}
)
_COLUMNS = re.compile(r"[ \t]+")  # as an answer line's blanks (ccnow_answer.BLANKS)
# A word that starts as an error or a refusal does (`ERR42`, `Failed-2`, `DECLINED05`), in any
# case, after a column's start or a sign (`E:ERR42`), not inside a word (`1ZERR4567`): never
# data, whatever digit it holds. Read as data, `pending ERR42` was a discount applied.
_SAYS_ERROR = re.compile(
    r"(?<![A-Za-z0-9])(?:err|fail|invalid|unknown|deni|deny|declin|reject|refus)",
    re.I | re.ASCII,
)


def is_data(columns: str) -> bool:
    """Whether what follows a status word is data, each column of it (after a blank or a tab):
    one with a digit (a date, an amount, a tracking number) or a listed code (`USD`, `UPS`);
    not a word that may make a new status (`pending review`) or say a failure (`pending FAIL`,
    `pending ERR42`: a word that starts as an error does is none, digit or not)."""
    return all(
        _SAYS_ERROR.search(c) is None and (_DIGIT.search(c) is not None or c.lower() in DATA_CODES)
        for c in _COLUMNS.split(columns)
    )
