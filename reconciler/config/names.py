"""Account and sink names: the rule they follow, uniqueness also in the env-variable spelling
their secrets' variables use (`a-b` and `a_b` would share one), and the one account lookup by
name (the command line and the API each word why none was chosen)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Protocol, TypeVar

from .secret import env_word
from .table import Table

_NAME = re.compile(r"[a-z0-9_-]{1,32}")
_NAME_RULE = "must be 1 to 32 characters of a-z 0-9 _ -"


class NoAccount(Enum):
    """Why `chosen_account` chose none."""

    NONE = "none"  # no name given, and no account of the source is configured
    SEVERAL = "several"  # no name given, and several are configured
    UNKNOWN = "unknown"  # the name given is none of them (there may be none)


def chosen_account(names: Sequence[str], name: str | None) -> str | NoAccount:
    """Return the account `name` chooses among `names`, a source's configured accounts: itself
    when configured; no name, the only one. Else why none is chosen."""
    if name is not None:
        return name if name in names else NoAccount.UNKNOWN
    if len(names) == 1:
        return names[0]
    return NoAccount.SEVERAL if names else NoAccount.NONE


class _Named(Protocol):
    @property
    def name(self) -> str: ...


A = TypeVar("A", bound=_Named)


def find_account(accounts: Iterable[A], name: str) -> A | None:
    """Return the account called `name`, or None when there is none."""
    return next((a for a in accounts if a.name == name), None)


def configured_account(accounts: Iterable[A], name: str) -> A:
    """Return the account called `name`; it must be configured (names come from the config)."""
    found = find_account(accounts, name)
    if found is None:
        raise LookupError(f"no account named {name!r}")
    return found


def account_option(names: Sequence[str], name: str) -> str:
    """` --account NAME` for a command the output tells a person to run about an account, as
    the command lines want it: unless `names`, its source's configured accounts, are it alone
    (commands.accounts.account_option, for a Config)."""
    return "" if list(names) == [name] else f" --account {name}"


def unique_name(table: Table, seen: dict[str, str]) -> str:
    """An explicit account or sink name, unique also in its env-variable spelling."""
    name = table.string("name")
    if not _NAME.fullmatch(name):
        raise table.error("name", _NAME_RULE)
    other = seen.get(env_word(name))
    if other == name:
        raise table.error("name", f"duplicate name '{name}'")
    if other is not None:
        raise table.error("name", f"'{name}' and '{other}' share env variable names")
    seen[env_word(name)] = name
    return name
