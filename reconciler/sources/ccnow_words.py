"""The words of CCNow's status lines: its documented status words, and what may follow one in
an answer line as data rather than as words of a status of its own (`documented_status`, by
which the polls and the actions' answers alike read a line)."""

from __future__ import annotations

import re

from reconciler.model import known_statuses

# CCNow's documented status words. One in any case (`MARK_SHIPPED`) is that word: stored as written,
# a later answer in the document's case would raise a change that is none, and a word in capitals
# would never count as settled. Followed by data (`pending\tUSD`, `MARK_SHIPPED 2026-11-30`,
# `mark_shipped UPS Ground`: a carrier in two words) it names the status, the rest kept as data:
# else each new column would read as another status, and a ship answered so would wait for a
# person. Followed by words that say an error (`pending ERROR`, `pending ERR42`, `completed
# FRAUD`) or may be a status of their own (`pending review`, `pending HOLD`), it is kept whole,
# as written, as every word the document does not list is: read as the bare word, a failed
# discount would be reported applied.
DOCUMENTED = frozenset(known_statuses("ccnow"))
# A documented word by its lower case: CCNow answers them in any case.
DOCUMENTED_BY_LOWER = {word.lower(): word for word in DOCUMENTED}
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


def is_data(columns: str) -> bool:
    """Whether what follows a status word is data, each column of it (after a blank or a tab):
    one with a digit (a date, an amount, a tracking number) or a listed code (`USD`, `UPS`);
    not a word that may make a new status (`pending review`) or say a failure (`pending FAIL`)."""
    return all(
        _DIGIT.search(c) is not None or c.lower() in DATA_CODES for c in _COLUMNS.split(columns)
    )


# What says an error or a failure, as a word's start, in any case (`ERR42`, `Failed`,
# `invalid`), and the short words that say one only whole (`NO`, `NOK`: `not OK`; `not_found`).
# Wide on purpose: a line kept whole only waits for a person, one read as its status word acts.
_SAYS_ERROR = re.compile(
    r"(?<![A-Za-z0-9])(?:err|fail|invalid|unknown|deni|deny|declin|reject|refus|fraud|void|abort"
    r"|(?:no|nok|not|none|bad|wrong)(?![A-Za-z0-9]))",
    re.I | re.ASCII,
)
# The words CCNow's statuses are made of (`hold` of `vacation_hold`, `shipped`), and the
# statuses: one of them after a status word may say the order stands elsewhere.
_STATUS_PARTS = DOCUMENTED | {part for word in DOCUMENTED for part in word.split("_")}
_PUNCTUATION = "()[]{}.,:;!?\"'"


def says_error(text: str) -> bool:
    """Whether text says an error or a failure (`ERR42`, `pending FAIL`, `Invalid amount`)."""
    return _SAYS_ERROR.search(text) is not None


def _case(word: str) -> str:
    """How a word is written: `lower`, `upper`, `title` (`Ground`, `FedEx`) or `mixed`."""
    if word.islower() or word.isupper():
        return "lower" if word.islower() else "upper"
    return "title" if word[:1].isupper() else "mixed"


def _may_be_status(columns: list[str], status_word: str) -> bool:
    """Whether the columns after a status word may be a status of their own: one is a status
    word or a part of one (`HOLD`, `completed`), or the first is a word written as the status
    word is (`pending review`, `PENDING REVIEW`: CCNow's words are letters and `_`), which may
    be the rest of a status CCNow does not document. A carrier's code (`ups`) is no such word."""
    if any(c.strip(_PUNCTUATION).lower() in _STATUS_PARTS for c in columns):
        return True
    first = columns[0].strip(_PUNCTUATION)  # `(awaiting)` is a word in brackets
    if re.search(r"[A-Za-z0-9]", first) is None:
        return True  # signs alone (`pending ?`, `pending ()`) are no free text one can read
    return (
        re.fullmatch(r"[A-Za-z_]+", first) is not None
        and first.lower() not in DATA_CODES
        and _case(first) == _case(status_word)
    )


def documented_status(text: str) -> tuple[str, str | None] | None:
    """Read a status line's words (what follows the order id): its documented status word (in
    the document's case) and the data after it (None: nothing), or None when it is to be kept
    whole: not a documented word first, or followed by words that say an error
    (`says_error`) or may be a status of their own (`pending review`, `pending HOLD`)."""
    first, *more = _COLUMNS.split(text.strip(" \t"), maxsplit=1)
    word = DOCUMENTED_BY_LOWER.get(first.lower())
    if word is None or not more:
        return None if word is None else (word, None)
    rest = more[0]
    if says_error(rest):
        return None
    if is_data(rest) or not _may_be_status(_COLUMNS.split(rest), first):
        return word, rest
    return None
