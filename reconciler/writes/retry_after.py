"""A provider's Retry-After as a write passes it on with its answer (a 429's when to try again):
delta-seconds, or an HTTP date in any of RFC 9110's three forms (a recipient must read all
three), written again as IMF-fixdate, the one form a sender may write. Anything else is none:
Python's date reader (`sources/http.parse_retry_after`, which reads a poll's delay) takes
trailing junk, a zone or no weekday, and a client reading what is passed on may not."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import format_datetime

__all__ = ["passed_retry_after"]

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


def passed_retry_after(value: str | None, now: datetime) -> str | None:
    """Return the Retry-After `value` as it is passed on: its seconds as they came, or its date
    as IMF-fixdate; None when it is neither (or no date: 31 Feb). `now` places an RFC 850
    date's two-digit year."""
    if value is None:
        return None
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
        when = datetime(
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
    return format_datetime(when, usegmt=True)
