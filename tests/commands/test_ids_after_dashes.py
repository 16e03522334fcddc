"""Every command taking order ids takes them after `--` too (an id may begin with "-"), and
still refuses a command line without any id."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import cli
from tests.conftest import call_cli, cli_env, write_config
from tests.fake_providers import FakeCCNow

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


async def test_everything_after_dashes_is_an_id(tmp_path: Path, fake_ccnow: FakeCCNow) -> None:
    # Not an option: a malformed id, refused (65) by the command, nothing sent.
    argv = ["ccnow", "ship", "--", "396101155", "--dry-run"]
    args = cli.parse_args(argv)
    assert args.ids == ["396101155", "--dry-run"] and not args.dry_run
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await call_cli("--config", cfg, *argv, env=cli_env())
    assert result.code == 65, result.stdout + result.stderr
    assert "--dry-run" in result.stderr
    assert fake_ccnow.batch_sizes == [] and fake_ccnow.actions == []


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
    err = capsys.readouterr().err
    assert "the following arguments are required: ID" in err
    # The command's own usage and name, as argparse's own errors of that command give them.
    words = [a for a in argv[: argv.index("--") if "--" in argv else None] if a[0] != "-"]
    command = " ".join(words[:2] if words[0] == "ccnow" else words[:1])
    assert f"usage: reconciler {command} " in err
    assert f"reconciler {command}: error: " in err
