"""Account and sink names: the rule they follow, and uniqueness also in the env-variable spelling
their secrets' variables use (`a-b` and `a_b` would share one)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .secret import env_word
from .table import Table

_NAME = re.compile(r"[a-z0-9_-]{1,32}")
_NAME_RULE = "must be 1 to 32 characters of a-z 0-9 _ -"


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
