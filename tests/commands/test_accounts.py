"""The one account lookup: find a configured account by name, choose the one a command acts on."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

from reconciler import exits
from reconciler.commands.accounts import choose_account
from reconciler.config import Config, load_config
from reconciler.config.names import configured_account, find_account
from reconciler.exits import UsageError
from tests.conftest import call_cli

REPO = Path(__file__).resolve().parents[2]

TWO_CCV_ONE_CCNOW = """
[[ccv]]
name = "shop-nl"
base_url = "https://ccv.example"
api_key = "k1"

[[ccv]]
name = "shop-be"
base_url = "https://ccv.example"
api_key = "k2"

[ccnow]
url = "https://ccnow.example"
client_id = "c"
password = "p"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    path = tmp_path / "reconciler.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "r.db"}"\n{TWO_CCV_ONE_CCNOW}')
    return load_config(path)


def test_an_account_is_found_by_its_name(config: Config) -> None:
    assert find_account(config.ccv, "shop-be") is config.ccv[1]
    assert find_account(config.ccv, "shop-de") is None
    assert configured_account(config.ccnow, "default") is config.ccnow[0]
    with pytest.raises(LookupError):
        configured_account(config.ccv, "shop-de")


def test_the_only_account_of_a_source_needs_no_name(config: Config) -> None:
    assert choose_account(config, "ccnow", None) == "default"
    assert choose_account(config, "ccv", "shop-be") == "shop-be"


@pytest.mark.parametrize(
    ("source", "name", "message"),
    [
        ("ccv", None, "several ccv accounts (shop-nl, shop-be): give --account"),
        ("ccv", "shop-de", "no ccv account named 'shop-de' (shop-nl, shop-be)"),
        ("ccnow", "us", "no ccnow account named 'us' (default)"),
    ],
)
def test_an_account_that_cannot_be_chosen_is_a_usage_error(
    config: Config, source: str, name: str | None, message: str
) -> None:
    with pytest.raises(UsageError) as info:
        choose_account(config, source, name)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_exit_codes_are_defined_only_in_exits() -> None:
    """One table of exit codes: no other module assigns an EX_ name or calls sys.exit()
    except cli.main, which ends the process."""
    names = {n for n in vars(exits) if n.startswith("EX_")}
    offenders = []
    for path in sorted((REPO / "reconciler").rglob("*.py")):
        if path.name == "exits.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and name.id in names:
                        offenders.append(f"{path.name}:{name.lineno} {name.id}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "exit"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "sys"
                and path.name != "cli.py"
            ):
                offenders.append(f"{path.name}:{node.lineno} sys.exit")
    assert offenders == []


async def test_untrack_with_several_accounts_needs_the_account(tmp_path: Path) -> None:
    # Without --account it removed the id from every account, another shop's order too.
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "r.db"}"\n{TWO_CCV_ONE_CCNOW}')
    order = "0b7c2a4e-0000-4000-8000-000000000001"
    for account in ("shop-nl", "shop-be"):
        assert (
            await call_cli("--config", cfg, "track", "ccv", order, "--account", account)
        ).code == 0
    refused = await call_cli("--config", cfg, "untrack", "ccv", order)
    assert refused.code == 2
    assert "several ccv accounts (shop-nl, shop-be): give --account" in refused.stderr
    assert (
        await call_cli("--config", cfg, "untrack", "ccv", order, "--account", "shop-nl")
    ).code == 0
    with sqlite3.connect(tmp_path / "r.db") as conn:
        left = conn.execute("SELECT account FROM orders WHERE order_id = ?", (order,)).fetchall()
    assert left == [("shop-be",)]


async def test_a_command_that_needs_a_missing_table_says_so_as_a_config_error(
    tmp_path: Path,
) -> None:
    # Exit 78, as `ccv submit` without [receiver]: not a usage error (2) of the command line.
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "r.db"}"\n{TWO_CCV_ONE_CCNOW}')
    order = "0b7c2a4e-0000-4000-8000-000000000001"
    result = await call_cli(
        "--config", cfg, "notification-url", "ccv", "--order", order, "--account", "shop-nl"
    )
    assert result.code == 78
    assert "receiver: notification URLs need [receiver] public_url and secret" in result.stderr
    # And a word that is no event type is refused, as by the API's feed.
    assert (await call_cli("--config", cfg, "events", "--type", "order.bogus")).code == 2
