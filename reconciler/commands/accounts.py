"""Finding a configured provider account by its name (the one lookup every room needs)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from ..config import Config, names
from ..exits import UsageError
from ..model import Source


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


def account_names(config: Config, source: Source) -> list[str]:
    """The configured accounts of one source, in config order."""
    return [a.name for a in (config.ccv if source == "ccv" else config.ccnow)]


def account_option(config: Config, source: Source, name: str) -> str:
    """` --account NAME` for a command the output tells a person to run about the account, as
    `choose_account` wants it: unless it is the config's only account of its source."""
    return names.account_option(account_names(config, source), name)


def choose_account(config: Config, source: Source, name: str | None) -> str:
    """The account a command acts on: `name` if configured, else the only one (UsageError)."""
    accounts = account_names(config, source)
    if not accounts:
        raise UsageError(f"no [{source}] account is configured")
    if name is None:
        if len(accounts) > 1:
            raise UsageError(f"several {source} accounts ({', '.join(accounts)}): give --account")
        return accounts[0]
    if name not in accounts:
        raise UsageError(f"no {source} account named {name!r} ({', '.join(accounts)})")
    return name
