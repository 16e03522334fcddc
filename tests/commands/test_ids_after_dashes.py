"""Every command taking order ids takes them after `--` too (an id may begin with "-"), and
still refuses a command line without any id."""

from __future__ import annotations

import pytest

from reconciler import cli

ACTIONS = ("ship", "cancel", "add-tracking", "adjust")


@pytest.mark.parametrize(
    "argv",
    [
        ["track", "ccv", "--", "-abc"],
        ["untrack", "ccv", "--", "-abc"],
        ["untrack", "ccv", "--account", "a", "--", "-abc"],
        *(["ccnow", action, "--", "-abc"] for action in ACTIONS),
        ["ccnow", "ship", "--notes", "n", "--", "-abc"],
    ],
)
def test_ids_after_dashes(argv: list[str]) -> None:
    assert cli.parse_args(argv).ids == ["-abc"]


def test_everything_after_dashes_is_an_id() -> None:
    # Not an option: a malformed id, refused (65) by the command, nothing sent.
    args = cli.parse_args(["ccnow", "ship", "--", "396101155", "--dry-run"])
    assert args.ids == ["396101155", "--dry-run"] and not args.dry_run


def test_resolve_takes_its_id_after_dashes() -> None:
    assert cli.parse_args(["ccnow", "resolve", "--sent", "--", "-abc"]).id == "-abc"


@pytest.mark.parametrize(
    "argv",
    [
        ["untrack", "ccv"],
        ["untrack", "ccv", "--"],
        *(["ccnow", action] for action in ACTIONS),
        ["ccnow", "ship", "--dry-run", "--"],
        ["ccnow", "resolve", "--sent"],
        ["ccnow", "resolve", "--sent", "--"],
    ],
)
def test_at_least_one_id(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(argv)
    assert exited.value.code == 2
    assert "the following arguments are required: ID" in capsys.readouterr().err
