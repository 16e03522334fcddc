"""Retry-After, read in this one place: delta-seconds, or an HTTP date. Two callers read it
two ways, on purpose (README "Retry-After of a read", and the API's passed-back 429):

- how long a read or a post waits (`sources/http.parse_retry_after`): lenient, Python's mail
  date reader, which also takes a zone, no weekday or trailing words: a provider's sloppy date
  still spares it a request it asked us not to make;
- what a write passes on to its client with CCV's answer (`passed_retry_after`): strict, RFC
  9110's three HTTP-date forms (a recipient must read all three), written again as IMF-fixdate,
  the one form a sender may write; anything else is none, as a client reading what is passed
  on may refuse it."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

__all__ = ("passed_retry_after", "read_retry_after")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(?P<month>" + "|".join(_MONTHS) + ")"
_DAY_NAME = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_TIME = "(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"

# RFC 9110 5.6.7's HTTP-date: IMF-fixdate, obsolete RFC 850 (a two-digit year), and ANSI C's
# asctime() (a day of one digit after a space). Names and GMT are case-sensitive.
_DATES = (
    re.compile(f"{_DAY_NAME}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT"),
    re.compile(
        "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
        f"(?P<day>[0-9]{{2}})-{_MONTH}-(?P<year2>[0-9]{{2}}) {_TIME} GMT"
    ),
    re.compile(f"{_DAY_NAME} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})"),
)


def read_retry_after(value: str | None, now: datetime, *, strict: bool) -> str | datetime | None:
    """Return a Retry-After's delta-seconds as they came (digits), or the moment its HTTP date
    names (aware); None when it is neither (or no date: 31 Feb). `strict`: RFC 9110's grammar
    alone, else whatever Python's mail date reader takes (see the module's docstring). `now`
    places a strict RFC 850 date's two-digit year."""
    if not value:
        return None
    if not strict:
        value = value.strip()
        # HTTP headers are ASCII: str.isdigit() alone accepts "²", which float() refuses.
        if not value.isascii():
            return None
        if value.isdigit():
            return value
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    value = value.strip(" \t")
    if re.fullmatch("[0-9]+", value):
        return value
    for form in _DATES:
        if (found := form.fullmatch(value)) is not None:
            break
    else:
        return None
    parts = found.groupdict()
    if "year" in parts:
        year = int(parts["year"])
    else:
        # RFC 9110: a two-digit year more than 50 years ahead is the latest past year ending so.
        year = now.year - now.year % 100 + int(parts["year2"])
        if year > now.year + 50:
            year -= 100
    try:
        return datetime(
            year,
            _MONTHS.index(found["month"]) + 1,
            int(found["day"]),
            int(found["hour"]),
            int(found["minute"]),
            int(found["second"]),
            tzinfo=timezone.utc,
        )
    except ValueError:
        return None


def passed_retry_after(value: str | None, now: datetime) -> str | None:
    """Return the Retry-After `value` as a write passes it on: its seconds as they came, or its
    date as IMF-fixdate; None when it is neither (read strictly)."""
    found = read_retry_after(value, now, strict=True)
    if found is None or isinstance(found, str):
        return found
    return format_datetime(found, usegmt=True)
