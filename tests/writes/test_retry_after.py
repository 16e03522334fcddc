"""The Retry-After a write passes on with CCV's answer: seconds, or an HTTP date in any of RFC
9110's three forms written again as IMF-fixdate; nothing else (review 30c)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from reconciler.writes.retry_after import passed_retry_after

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
