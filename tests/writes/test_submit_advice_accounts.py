"""What `ccv submit` and `status` tell a person to run works as printed: with several accounts
of a source the commands name `--account` (without it they are usage errors, exit 2); and a
submit CCV gave no answer to says so, not an HTTP status CCV never sent."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.commands.status_report import AccountStatus, Status, StoreStatus
from reconciler.commands.status_text import render_text
from tests.conftest import call_cli, free_port
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import CCV_KEY
from tests.server.test_api import PUBLIC_URL, RECEIVER_SECRET


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


def accounts_config(tmp_path: Path, fake: FakeCCVWrites, names: list[str]) -> Path:
    """A config of one CCV account per name, all on `fake` (a 500 ms timeout, no retries)."""
    parts = [f'[store]\npath = "{tmp_path / "reconciler.db"}"\n']
    for name in names:
        parts.append(
            f'[[ccv]]\nname = "{name}"\nbase_url = "{fake.base_url}"\napi_key = "{CCV_KEY}"\n'
            'timeout = "500ms"\nretries = 0\n'
        )
    parts.append(
        f'[receiver]\nlisten = "127.0.0.1:{free_port()}"\npublic_url = "{PUBLIC_URL}"\n'
        f'secret = "{RECEIVER_SECRET}"\n'
    )
    path = tmp_path / "reconciler.toml"
    path.write_text("\n".join(parts))
    path.chmod(0o600)
    return path


def advised(text: str) -> list[str]:
    """The reconciler commands a text tells a person to run."""
    return re.findall(r"`(reconciler [^`]*)`", text)


@pytest.mark.parametrize(
    ("names", "option"), [(["eu", "us"], " --account eu"), (["eu"], "")], ids=["two", "one"]
)
async def test_a_submit_ccv_never_answered_says_so_and_its_advice_runs(
    tmp_path: Path, fake: FakeCCVWrites, names: list[str], option: str
) -> None:
    # Two accounts: both commands advised (and `status`'s TO DO) were usage errors, "give
    # --account"; and the CLI said "submit answered HTTP 504", an answer CCV never gave.
    cfg = accounts_config(tmp_path, fake, names)
    fake.submit_replies = [json_reply(201, {"orderId": "never-seen"}, delay_s=30)]
    stdin = json.dumps(submit_body(externalReference="INV-77")).encode()
    argv = ["--config", str(cfg), "ccv", "submit", "-", "--account", "eu"]
    result = await call_cli(*argv, stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "HTTP 504" not in result.stderr and "answered" not in result.stderr
    assert "CCV gave no answer within 0.5 s (the account's timeout)" in result.stderr
    track = f"reconciler track ccv ID --ref INV-77{option}"
    resolve = f"reconciler ccv resolve --ref INV-77 --not-sent{option}"
    assert advised(result.stderr) == [track, resolve], result.stderr

    status = await call_cli("--config", cfg, "status")
    (table,) = [t for t in status.stdout.split("\n\n") if t.startswith("WRITES")]
    made = f"reconciler ccv resolve --ref REF --made{option}"  # for an unusable_order_id
    assert advised(" ".join(table.split())) == [
        *(c.replace("INV-77", "REF") for c in (track, resolve)),
        made,
    ]

    # As printed: the person is sure CCV has none.
    done = await call_cli("--config", cfg, *shlex.split(resolve)[1:])
    assert done.code == 0, done.stderr
    assert "INV-77 not sent" in done.stdout


@pytest.mark.parametrize("option", [" --account eu", ""], ids=["several", "one"])
def test_status_names_the_account_in_ccnow_resolve_when_there_are_several(
    tmp_path: Path, option: str
) -> None:
    account = AccountStatus(
        "ccnow", "eu", "ok", None, None, None, (), 0, 0, 0, uncertain_writes=1,
        uncertain_of=("396-10-1142",), account_option=option,
    )  # fmt: skip
    store = StoreStatus(tmp_path / "r.db", True, 0, 0, None)
    text = render_text(Status(0.0, (account,), (), store, None))
    (table,) = [t for t in text.split("\n\n") if t.startswith("WRITES")]
    assert advised(" ".join(table.split())) == [
        f"reconciler ccnow resolve ID --sent|--not-sent{option}"
    ]
