"""The values of command-line options: argparse types that refuse a bad value with a message
naming it (a usage error, exit 2)."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import NoReturn

from ..config import parse_duration
from ..exits import EX_USAGE
from ..logs import say


class Parser(argparse.ArgumentParser):
    """argparse's parser, its usage errors said as `say` says the line why a command stopped:
    under journald every line (the usage, then `PROG: error: MESSAGE`) is an error line, found
    by `journalctl -p err` with the rest of the command's failure."""

    def error(self, message: str) -> NoReturn:
        for line in f"{self.format_usage()}{self.prog}: error: {message}".splitlines():
            say(line)
        self.exit(EX_USAGE)


def with_ids(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse a command line whose order ids may follow its options and `--` (an id may begin
    with "-"); a command taking ids (but `track`, which may read them from a file) needs one."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_known_args(argv[:cut])
    if not isinstance(getattr(args, "ids", None), list):
        args = parser.parse_args(argv)  # no ids to take: argparse's own reading, `--` and all
    else:
        # `track ccv --ref REF ID`: argparse gives a `*` positional nothing when an option comes
        # before its values, and leaves the ids over; they are the command's ids, and so is
        # everything after `--`.
        args.ids += [a for a in extra if not a.startswith("-")] + argv[cut + 1 :]
        unknown = [a for a in extra if a.startswith("-")]
        if unknown:  # from the top, as argparse's own refusal of an unknown option is
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    # The ids are `*` (`?` for one) so that argparse takes none before `--`; required here.
    if args.command != "track" and getattr(args, "ids", getattr(args, "id", "")) in ([], None):
        _command(parser, args).error("the following arguments are required: ID")
    return args


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)command's own parser, for its usage and `reconciler untrack:` prefix in an
    error argparse did not raise itself (argparse has no public way to reach it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _command(chosen, args)
    return parser


def _number(text: str) -> float:
    """The number an option's text says, or NaN (which every range below refuses)."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def positive(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def speed(text: str) -> float:
    value = _number(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a speed of 0 or more")
    return value


def order_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of orders from 0 to 1000000")
    return value


def share(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share from 0 to 1")
    return value


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def iso(text: str) -> float:
    # RFC 3339 allows a lowercase "t" and "z".
    given = text.strip().upper().replace("Z", "+00:00")
    if _fraction_not_of_seconds(given):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a decimal fraction of the hour or minute is not read; "
            "give the seconds (17:22:30, not 17:22.5)"
        )
    try:
        value = _from_iso(given)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


# ISO 8601 lets the last field of a time (or offset) have a decimal fraction: `17:22.5` is
# 17:22:30. Python's fromisoformat reads every fraction as the second's (17:22:00.5), and `--since`
# would start half a minute (`17.5`: half an hour) early without a word: only a fraction right
# after the seconds (`17:22:30.5`, `172230.5`) is taken.
_DATE = re.compile(r"[0-9]{4}(-?)[0-9]{2}\1[0-9]{2}", re.ASCII)
_FIELDS_BEFORE = re.compile(r"[0-9:]*\Z", re.ASCII)
_SECONDS = re.compile(r"[0-9]{2}:[0-9]{2}:[0-9]{2}|[0-9]{6}", re.ASCII)


def _fraction_not_of_seconds(text: str) -> bool:
    date = _DATE.match(text)
    rest = text[date.end() + 1 :] if date else text  # the time and its offset
    for mark in re.finditer("[.,]", rest):
        before = _FIELDS_BEFORE.search(rest, 0, mark.start())
        if before is None or not _SECONDS.fullmatch(before.group()):
            return True
    return False


# Python 3.10's datetime.fromisoformat reads only what isoformat writes: RFC 3339's other
# fractions (`.79`, nanoseconds), a decimal comma, an offset without its colon and ISO 8601's
# basic form (`20261201T093227`) it refused, where 3.11 reads them. from_iso_basic reads them as
# 3.11 does (tests/commands/test_iso_since.py checks it against 3.11): ASCII digits only; the
# date's dashes all or none, and so the time's colons and the offset's; any one character
# between date and time; an offset only after a time, to the microsecond. Not ISO week dates.
_ISO = re.compile(
    r"([0-9]{4})(-?)([0-9]{2})\2([0-9]{2})"  # the date
    r"(?:.([0-9]{2})(?:(:?)([0-9]{2})(?:\6([0-9]{2})(?:[.,]([0-9]+))?)?)?"  # the time
    r"(?:([+-])([0-9]{2})(?:(:?)([0-9]{2})(?:\12([0-9]{2})(?:[.,]([0-9]+))?)?)?)?)?",  # offset
    re.ASCII | re.DOTALL,
)


def _from_iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        if sys.version_info >= (3, 11):
            raise
    return from_iso_basic(text)


def _micro(fraction: str | None) -> int:
    return int(fraction[:6].ljust(6, "0")) if fraction else 0  # past microseconds: cut, as 3.11


def from_iso_basic(text: str) -> datetime:
    """Read `text` as Python 3.11's datetime.fromisoformat does (for Python 3.10, whose own
    reads less); raise ValueError where it does not."""
    match = _ISO.fullmatch(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    year, _, month, day, hour, _, minute, second, fraction = match.groups()[:9]
    sign, off_h, _, off_m, off_s, off_f = match.groups()[9:]
    zone = None
    if sign is not None:
        offset = timedelta(
            hours=int(off_h),
            minutes=int(off_m or 0),
            seconds=int(off_s or 0),
            microseconds=_micro(off_f),
        )
        zone = timezone(-offset if sign == "-" else offset)
    h, m, s = (int(n or 0) for n in (hour, minute, second))  # a time left out is midnight
    return datetime(int(year), int(month), int(day), h, m, s, _micro(fraction), zone)
