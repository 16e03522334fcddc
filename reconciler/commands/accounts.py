"""A command's account: the configured one it names, or the only one (config/names.py holds
the lookup; a reason it chose none is a usage error here, exit 2)."""

from __future__ import annotations

from ..config import Config, names
from ..exits import UsageError
from ..model import Source


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
    chosen = names.chosen_account(accounts, name)
    if isinstance(chosen, str):
        return chosen
    if chosen is names.NoAccount.SEVERAL:
        raise UsageError(f"several {source} accounts ({', '.join(accounts)}): give --account")
    if not accounts:  # NONE, or a name while none is configured
        raise UsageError(f"no [{source}] account is configured")
    raise UsageError(f"no {source} account named {name!r} ({', '.join(accounts)})")
