"""A body the Submitter refuses (`prepare`: no boolean `notifyCustomerByEmail`, no `order`
object) is refused alike with and without a daemon: before a reference is made, named in a
`ccv.submit_sending` line or posted to the daemon. Through the daemon the command logged the
sending of a new reference, then the API's 422 with `external_reference` null: a send that
never happened, of a reference that exists nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import call_cli, daemon_here, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import api_toml
from tests.writes.test_submit_crash import listening


@pytest.mark.parametrize("held", [False, True], ids=["local", "through-the-daemon"])
@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            submit_body(notifyCustomerByEmail="no", order={}),
            "notifyCustomerByEmail: required, a boolean",
        ),
        (submit_body(order=[]), "order: required, an object (made with the order configurator)"),
    ],
    ids=["email-word", "order-list"],
)
async def test_a_body_the_submitter_refuses_names_no_reference_it_never_sent(
    tmp_path: Path, held: bool, body: dict[str, object], said: str
) -> None:
    async with FakeCCVWrites() as fake:
        port = free_port()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
        stdin = json.dumps(body).encode()
        if held:
            async with daemon_here(cfg):
                await listening(port)
                result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        else:
            result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (65, ""), result.stderr
    assert f"reconciler: error: {said}\n" in result.stderr
    messages = [line.get("message") for line in result.log_lines()]
    assert "ccv.submit_sending" not in messages, result.stderr
    assert "ccv.submit_via_api" not in messages, result.stderr
    assert "rc-" not in result.stderr, result.stderr
    assert fake.submits == []


async def test_a_submit_the_daemon_refuses_unrecorded_is_logged_as_refused(
    tmp_path: Path,
) -> None:
    # Over the daemon's [api] max_body (4096 in these tests): the command made a reference and
    # logged it as sending before the daemon could refuse it; the answer's line named none.
    body = submit_body(order={"notes": "x" * 8000})
    async with FakeCCVWrites() as fake:
        port = free_port()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
        async with daemon_here(cfg):
            await listening(port)
            stdin = json.dumps(body).encode()
            result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (65, ""), result.stderr
    assert "the daemon's API refused the submit (HTTP 413)" in result.stderr
    lines = {line.get("message"): line for line in result.log_lines()}
    made = lines["ccv.submit_sending"]["external_reference"]
    answer = lines["ccv.submit_via_api"]
    assert (answer["status"], answer["external_reference"]) == (413, made), result.stderr
    assert answer["refused_by_daemon"] is True
    assert fake.submits == []
