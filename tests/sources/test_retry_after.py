"""Retry-After, read in one place (`read_retry_after`) for its two callers: what a write passes
on with CCV's answer (strict: seconds, or an HTTP date in any of RFC 9110's three forms written
again as IMF-fixdate; nothing else, review 30c) and how long a read waits (`parse_retry_after`:
lenient, as Python's date reader takes a date)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from reconciler.sources.http import parse_retry_after
from reconciler.sources.retry_after import passed_retry_after, read_retry_after

NOW = datetime(2026, 12, 2, 7, 0, tzinfo=timezone.utc)

PASSED = [
    ("120", "120"),
    (" 0 ", "0"),
    ("Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("Wed Dec 16 07:00:00 2026", "Wed, 16 Dec 2026 07:00:00 GMT"),
    # A two-digit year more than 50 years ahead is the latest past year ending so.
    ("Thursday, 02-Dec-76 07:00:00 GMT", "Wed, 02 Dec 2076 07:00:00 GMT"),
    ("Thursday, 02-Dec-77 07:00:00 GMT", "Fri, 02 Dec 1977 07:00:00 GMT"),
]


@pytest.mark.parametrize(("value", "passed"), PASSED)
def test_seconds_and_the_three_http_date_forms_are_passed_on(value: str, passed: str) -> None:
    assert passed_retry_after(value, NOW) == passed


REFUSED = [
    None,
    "",
    "5 seconds",
    "-5",
    "1.5",
    "²",
    "12\udcff",
    "Wed, 02 Dec 2026 07:00:00 GMT junk",
    "2 Dec 2026 07:00:00 -0000",
    "Wed, 02 Dec 2026 07:00:00 +0000",
    "wed, 02 dec 2026 07:00:00 gmt",
    "Wed, 31 Feb 2026 07:00:00 GMT",
    "Wed, 02 Dec 2026 25:00:00 GMT",
    "Sun, 06-Nov-94 08:49:37 GMT",
    "Sun Nov 6 08:49:37 1994",
]


@pytest.mark.parametrize("value", REFUSED)
def test_anything_else_is_no_retry_after(value: str | None) -> None:
    assert passed_retry_after(value, NOW) is None


# What only the lenient reading (a read's wait) takes; the strict one (what is passed on) not.
LENIENT_ONLY = [
    ("Wed, 02 Dec 2026 07:00:00 +0000", 0.0),
    ("2 Dec 2026 07:01:00 -0000", 60.0),
    ("wed, 02 dec 2026 07:02:00 gmt", 120.0),
    ("Wed, 02 Dec 2026 08:00:00 +0100", 0.0),
    ("\v30\n", 30.0),
]


@pytest.mark.parametrize(("value", "seconds"), LENIENT_ONLY)
def test_the_two_readings_differ_by_the_one_parameter(value: str, seconds: float) -> None:
    assert read_retry_after(value, NOW, strict=False) is not None
    assert read_retry_after(value, NOW, strict=True) is None
    assert parse_retry_after(value, NOW) == seconds
    assert passed_retry_after(value, NOW) is None


# Python's reader takes a two-digit year above 68 as 19xx, RFC 9110 as the latest past year
# ending so: 2076 (a read waits an hour at most, and waits none for 1976; kept as it was).
AGREED = [(value, passed) for value, passed in PASSED if "-76 " not in value]


@pytest.mark.parametrize(("value", "passed"), AGREED)
def test_what_is_passed_on_is_what_a_read_waits_for(value: str, passed: str) -> None:
    # Seconds as they came, a date as the moment it names, in both readings.
    strict, lenient = (read_retry_after(value, NOW, strict=s) for s in (True, False))
    assert strict == lenient
    if passed.isdigit():
        assert parse_retry_after(value, NOW) == float(passed)
    else:
        assert isinstance(strict, datetime)
        assert parse_retry_after(value, NOW) == max(0.0, (strict - NOW).total_seconds())
