"""`--since` reads on Python 3.10 what Python 3.11's datetime.fromisoformat reads (argtypes)."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.commands.argtypes import from_iso_basic

needs_311 = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.11's fromisoformat is what it is compared with"
)


HOUR = timedelta(hours=1)


def _two(top: int) -> st.SearchStrategy[str]:
    return st.integers(0, top).map(lambda n: f"{n:02d}")


# The strategies are built once: a composite that builds its own at every draw spends more than
# half of the test's time making and validating them again (3,000 examples, the suite's slowest
# test before).
_YEAR = st.integers(1, 9999).map(lambda n: f"{n:04d}")
_MONTH, _DAY = _two(13), _two(32)
_HOUR, _MINUTE, _SECOND, _OFFSET_HOUR = _two(25), _two(60), _two(61), _two(24)
_SEPARATORS = st.sampled_from(["-", ""])
_COLONS = st.sampled_from([":", ""])
_TIME_SEPARATORS = st.sampled_from(["T", " ", "t", "X", "+", "-", "5", "é"])
_FRACTION_MARKS = st.sampled_from([".", ","])
_FRACTION_DIGITS = st.from_regex(r"[0-9]{1,10}", fullmatch=True)
_SIGNS = st.sampled_from(["+", "-"])
_STRAYS = st.sampled_from(["\u0662", "a", ":", "-", "0", "."])


# After the first dash or colon (or none): the same twice as often as the other, left out or
# put in one place only.
_DATE_SEPARATOR_AFTER = {"-": st.sampled_from(["-", "-", ""]), "": st.sampled_from(["", "", "-"])}
_COLON_AFTER = {":": st.sampled_from([":", ":", ""]), "": st.sampled_from(["", "", ":"])}


@st.composite
def _iso_texts(draw: st.DrawFn) -> tuple[str, bool]:
    # ISO 8601 / RFC 3339 as 3.11 reads them, with near misses: a dash or colon left out in one
    # place only, out-of-range fields, a separator of any kind, stray characters.
    sep = draw(_SEPARATORS)
    text = f"{draw(_YEAR)}{sep}{draw(_MONTH)}"
    text += draw(_DATE_SEPARATOR_AFTER[sep]) + draw(_DAY)
    if draw(st.booleans()):
        text += draw(_TIME_SEPARATORS)
        colon = draw(_COLONS)
        parts = [draw(_HOUR), draw(_MINUTE), draw(_SECOND)][: draw(st.integers(1, 3))]
        text += parts[0]
        for part in parts[1:]:
            text += draw(_COLON_AFTER[colon]) + part
        # A fraction after the seconds only: 3.11 takes one after the hour or the minutes too
        # (`T09.5` is 09:00:00.5) and an empty one before an offset, which are no ISO 8601.
        if len(parts) == 3 and draw(st.booleans()):
            text += draw(_FRACTION_MARKS) + draw(_FRACTION_DIGITS)
        if draw(st.booleans()):
            text += draw(_SIGNS) + draw(_OFFSET_HOUR)
            off_colon = draw(_COLONS)
            for part in [draw(_MINUTE), draw(_MINUTE)][: draw(st.integers(0, 2))]:
                text += off_colon + part
    if draw(st.integers(0, 4)) == 0:  # a stray character: 3.11's parser takes some (`T000`)
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(_STRAYS) + text[at:]
        return text, False
    return text, True


def _read(parse: object, text: str) -> datetime | str:
    try:
        return parse(text)  # type: ignore[operator, no-any-return]
    except ValueError:
        return "refused"


@needs_311
# 300 examples: each kind of near miss the reader once took (a dash or colon left out in one
# place, an offset to the second, digits of another script) is pinned below as an example of
# its own (test_since_on_310_in_each_python), so the draws look for new ones; 1,500 made this
# one of the suite's costliest tests (8 s of a loaded run), 3,000 before that.
@settings(max_examples=300, deadline=None)
@given(_iso_texts())
def test_since_on_310_reads_what_311_reads(case: tuple[str, bool]) -> None:
    # On 3.10 a `--since` that its own fromisoformat refuses is read by from_iso_basic: it
    # must take what 3.11 takes, as the same time (offset included), and refuse what it
    # refuses; of a malformed text, never read a time 3.11 does not.
    text, well_formed = case
    expected = _read(datetime.fromisoformat, text)
    got = _read(from_iso_basic, text)
    if well_formed or got != "refused":
        assert got == expected
        assert getattr(got, "tzinfo", None) == getattr(expected, "tzinfo", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20261201T093227.5+0100", datetime(2026, 12, 1, 9, 32, 27, 500000, timezone(HOUR))),
        ("20261201T093227+020000", datetime(2026, 12, 1, 9, 32, 27, 0, timezone(2 * HOUR))),
        (
            "2026-12-01T09:32:27+01:00:30.5",
            datetime(2026, 12, 1, 9, 32, 27, 0, timezone(HOUR + timedelta(seconds=30.5))),
        ),
        ("2026-1201T09", "refused"),  # a dash in one place only
        ("2026-12-01T09:3227", "refused"),
        ("\u0662\u0660\u0662\u0666-12-01", "refused"),  # digits of another script
    ],
)
def test_since_on_310_in_each_python(text: str, expected: object) -> None:
    assert _read(from_iso_basic, text) == expected
