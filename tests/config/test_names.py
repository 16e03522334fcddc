"""The one account lookup, pure: the account a name (or none) chooses among a source's
configured accounts, or why none is chosen. The command line (commands/accounts.py) and the API
(server/api_requests.py) each word the reason their way."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from reconciler.config.names import NoAccount, chosen_account, configured_account, find_account


@pytest.mark.parametrize(
    ("names", "name", "chosen"),
    [
        (["a"], None, "a"),
        (["a", "b"], "b", "b"),
        (["a"], "a", "a"),
        ([], None, NoAccount.NONE),
        (["a", "b"], None, NoAccount.SEVERAL),
        (["a", "b"], "c", NoAccount.UNKNOWN),
        (["a"], "c", NoAccount.UNKNOWN),
        ([], "c", NoAccount.UNKNOWN),
    ],
)
def test_a_name_chooses_its_account_and_none_the_only_one(
    names: list[str], name: str | None, chosen: str | NoAccount
) -> None:
    assert chosen_account(names, name) == chosen


@dataclass
class Account:
    name: str


def test_a_configured_account_is_found_by_its_name() -> None:
    accounts = [Account("nl"), Account("be")]
    assert find_account(accounts, "be") is accounts[1]
    assert find_account(accounts, "de") is None
    assert configured_account(accounts, "nl") is accounts[0]
    with pytest.raises(LookupError):
        configured_account(accounts, "de")
