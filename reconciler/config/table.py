"""One TOML table being read; every error names the file and the dotted key."""

from __future__ import annotations

import stat
from collections.abc import Collection, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from ..model import Source, usd_amount
from .errors import ConfigError
from .statuses import status_key_problem
from .values import parse_duration, type_name, url_problem

_V = TypeVar("_V")

# Every `*timeout` key's bounds: a request, a sink's delivery or a wait for a provider that can
# be met (the intervals' floor: "1ms" timed every request out) and that ends ("36500d" held a
# stop, a drain or a caller for ever; `header_timeout` had this ceiling already).
TIMEOUT_AT_LEAST = "100ms"
TIMEOUT_AT_MOST = "10m"
_C = TypeVar("_C", bound=str)


def control_problem(value: str, *, strict: bool = False) -> str | None:
    """Why a string key's value cannot be used, or None: a line break, tab, NUL or other control
    character (a name, id or path never holds one; a NUL failed the first use of a path, a
    line break split a log line or request). `strict`, for a secret: any character that does
    not print too, an invisible or bidi one (a newline in a key broke the first request or
    split a header; the error names the key, never the value)."""
    if strict and not value.isprintable():
        return "must not contain a line break, control or invisible character"
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in value):
        return "must not contain a line break, tab, NUL or other control character"
    return None


class Table:
    """One TOML table being read; knows its dotted key so every error can name the key.

    It records each key its reader asks for, given or not. The reader is the one list of a
    table's keys: run on a KeyCensus, it names them before a table is read (`only`)."""

    def __init__(self, file: str, data: Mapping[str, object], key: str) -> None:
        self.file = file
        self._data = data
        self.key = key
        self._asked: set[str] = set()
        self.children: list[Table] = []  # the tables read within it, in the order read

    @property
    def asked(self) -> frozenset[str]:
        """The keys its reader asked for so far, given or not."""
        return frozenset(self._asked)

    def child(self, name: str, data: Mapping[str, object]) -> Table:
        """A table within this one (`name`: `sinks[0]`, `store`)."""
        table = Table(self.file, data, self.path(name))
        self.children.append(table)
        return table

    def has(self, name: str) -> bool:
        """Whether the key is given (asking counts as reading it)."""
        self._asked.add(name)
        return name in self._data

    def value(self, name: str, default: object = None) -> object:
        """The key's raw value, unchecked, or `default`."""
        self._asked.add(name)
        return self._data.get(name, default)

    def unread(self) -> list[str]:
        """The keys given that no reader asked for, in the file's order."""
        return [name for name in self._data if name not in self._asked]

    def unknown(self, keys: Collection[str]) -> list[str]:
        """The keys given that are not among `keys`, in the file's order."""
        return [name for name in self._data if name not in keys]

    def only(self, keys: Collection[str], problem: str = "unknown key") -> None:
        """Refuse the first key given that is not among `keys` (those its reader asks for),
        before any value is read: a typo, or a key of another table, is named as written even
        where it leaves a required key out."""
        for name in self.unknown(keys):
            raise self.error(name, problem)

    def refuse(self, name: str, problem: str) -> None:
        """Raise the problem (a KeyCensus, which reads nothing given, goes on)."""
        raise self.error(name, problem)

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.path(name), problem)

    def get(self, name: str, kind: type[_V], what: str) -> _V | None:
        value = self.value(name)
        if value is None:
            return None
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        raise self.error(name, f"expected {what}, got {type_name(value)}")

    def string(
        self,
        name: str,
        default: str | None = None,
        *,
        allow_empty: bool = False,
        trimmed: bool = False,
    ) -> str:
        """A string; required when `default` is None. `trimmed`: a value a provider matches as
        it is sent (a login), or a file's path, so white space alone or at an end is refused,
        never sent or made a file's name."""
        value = self.get(name, str, "a string")
        if value is None:
            if default is None:
                raise self.error(name, "required")
            return default
        if not value and not allow_empty:
            raise self.error(name, "must not be empty")
        if (problem := control_problem(value)) is not None:
            raise self.error(name, problem)
        if trimmed and value and not value.strip():
            raise self.error(name, "must not be only white space")
        if trimmed and value != value.strip():
            raise self.error(name, f"must not begin or end with white space ({value!r})")
        return value

    def choice(self, name: str, choices: tuple[_C, ...], default: _C | None = None) -> _C:
        value = self.string(name, default)
        for choice in choices:
            if value == choice:
                return choice
        raise self.error(name, f"must be one of {', '.join(choices)}")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name, int, "an integer")
        if value is None:
            return default
        if not low <= value <= high:
            raise self.error(name, f"must be between {low} and {high}")
        return value

    def duration(
        self,
        name: str,
        default: str | None,
        *,
        positive: bool = False,
        at_least: str | None = None,
        at_most: str | None = None,
    ) -> float:
        """Seconds from a duration key; required when `default` is None."""
        value = self.value(name, default)
        if value is None:
            raise self.error(name, "required")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.error(
                name,
                f'expected a duration (seconds or a string like "5m"), got {type_name(value)}',
            )
        if isinstance(value, str) and (problem := control_problem(value)) is not None:
            raise self.error(name, problem)
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None
        if positive and seconds == 0:
            raise self.error(name, "must be greater than 0")
        if at_least is not None and seconds < parse_duration(at_least):
            raise self.error(name, f'must be at least "{at_least}"')
        if at_most is not None and seconds > parse_duration(at_most):
            raise self.error(name, f'must be at most "{at_most}"')
        return seconds

    def timeout(self, name: str, default: str) -> float:
        """Seconds from a timeout key, within the bounds every timeout key has."""
        return self.duration(
            name, default, positive=True, at_least=TIMEOUT_AT_LEAST, at_most=TIMEOUT_AT_MOST
        )

    def duration_range(
        self,
        low_name: str,
        low_default: str,
        high_name: str,
        high_default: str,
        *,
        at_least: str | None = None,
    ) -> tuple[float, float]:
        """A (minimum, maximum) pair of positive durations."""
        low = self.duration(low_name, low_default, positive=True, at_least=at_least)
        high = self.duration(high_name, high_default, positive=True, at_least=at_least)
        if high < low:
            # Blame a key the user wrote: the one given, when the other is its default.
            if not self.has(high_name):
                raise self.error(
                    low_name, f'must not be more than {high_name} (default "{high_default}")'
                )
            if not self.has(low_name):
                raise self.error(
                    high_name, f'must not be less than {low_name} (default "{low_default}")'
                )
            raise self.error(high_name, f"must not be less than {low_name}")
        return low, high

    def usd(self, name: str, default: str) -> Decimal:
        """A positive amount in USD with at most two decimals (a string or a number)."""
        value = self.value(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.error(name, f"expected an amount in USD, got {type_name(value)}")
        amount = usd_amount(str(value))
        if amount is None or amount <= 0:
            raise self.error(name, "must be an amount in USD above 0, at most 2 decimals")
        return amount

    def url(self, name: str, *, base: bool = False) -> str:
        value = self.string(name)
        problem = url_problem(value, base=base)
        if problem is not None:
            raise self.error(name, problem)
        return value

    def strings(self, name: str, what: str) -> list[str]:
        """A non-empty list of strings (`what` says what it is); required."""
        value = self.value(name)
        if value is None:
            raise self.error(name, "required")
        if not isinstance(value, list):
            raise self.error(name, f"expected {what}, got {type_name(value)}")
        if not value:
            raise self.error(name, "must not be empty")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{index}]", f"expected a string, got {type_name(item)}")
        return value

    def table(self, name: str) -> Table | None:
        """The key's table, to be read; None when not given."""
        value = self.get(name, dict, "a table")
        return None if value is None else self.child(name, value)

    def status_durations(
        self,
        name: str,
        source: Source,
        default: Mapping[str, str],
        *,
        stuck: bool = False,
        at_least: str | None = None,
    ) -> dict[str, float]:
        """A table of `source`'s status word -> duration (positive, except under `stuck_after`
        where 0 is "off"); a given table replaces `default`. A word in the wrong case or
        misspelt is an error: it would match no order, in silence."""
        table = self.table(name)
        if table is None:
            return {status: parse_duration(value) for status, value in default.items()}
        # Its keys are status words, each checked here.
        statuses = table.unread()
        for status in statuses:
            problem = status_key_problem(source, status, stuck=stuck)
            if problem is not None:
                raise table.error(status, problem)
        return {
            status: table.duration(status, None, positive=not stuck, at_least=at_least)
            for status in statuses
        }


class KeyCensus(Table):
    """A table with nothing given, run through a reader to learn the keys it asks for (those a
    table it reads may hold). A key without a default reads as a stand-in instead of being
    refused as required, so that the reader goes on to ask for every key after it."""

    def __init__(self, file: str) -> None:
        super().__init__(file, {}, "")

    def string(
        self,
        name: str,
        default: str | None = None,
        *,
        allow_empty: bool = False,
        trimmed: bool = False,
    ) -> str:
        given = "census" if default is None else default
        return super().string(name, given, allow_empty=allow_empty, trimmed=trimmed)

    def url(self, name: str, *, base: bool = False) -> str:
        self.value(name)
        return "https://census.invalid"

    def strings(self, name: str, what: str) -> list[str]:
        self.value(name)
        return ["census"]

    def refuse(self, name: str, problem: str) -> None:
        pass


def file_path(base_dir: Path, table: Table, name: str, *, look: bool = True) -> Path:
    """A file's path key, relative ones beside the config. One that ends as a directory's does
    (`ts/newdir/`, `.`) is refused: Path drops the `/`, and a file named `ts/newdir` was made.
    Unless something that is no directory is there (`st/r.db/` with st/r.db the live database,
    a log shipper's FIFO, `/dev/stdout/`): that was used before, and a config that worked must
    keep loading. `look=False` (a census of the keys): nothing on disk is asked."""
    # White space at an end is refused as for a login: " " made files named " -history".
    value = table.string(name, trimmed=True)
    path = base_dir / value
    if look and value.rpartition("/")[2] in ("", ".", "..") and _nothing_or_a_directory(path):
        raise table.error(name, f"'{value}' names a directory; give the path of a file")
    return path


def _nothing_or_a_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:  # there, but not to be looked at by this user (EACCES): its use says so
        return False
