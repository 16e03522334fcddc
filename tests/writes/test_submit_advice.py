"""What `ccv submit` advises, and what `ccv resolve --not-sent` then does, agree: the advice
comes from the submission as stored (its answer's reason, a notification that came before
CCV's answer), also through the daemon's API and for a reference submitted already; an answer
whose body cannot be read keeps its Location (CCV said where the order is); an answer naming
its order under an id reconciler cannot use is not closable; and the commands advised run as
printed, whatever the reference holds. Closed wrongly, the reference was free again and its
next submit made a second order at CCV. Real HTTP against a fake CCV, the command line as a
person runs it, with and without a running daemon."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.writes.ccv_http import MAX_ANSWER_BYTES
from tests.conftest import call_cli, daemon_here, free_port, poll_until, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import Reply
from tests.server.test_api import ORDER, api_toml
from tests.writes.test_submit_crash import listening, query
from tests.writes.test_submit_notified_while_waiting import notify

MADE = "/order/5d0e7c1a-2b3f"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


def advised(text: str) -> list[str]:
    """The reconciler commands a text tells a person to run."""
    return re.findall(r"`(reconciler [^`]*)`", text)


async def submitted(cfg: Path, reference: str) -> tuple[int, str]:
    stdin = json.dumps(submit_body(externalReference=reference)).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.stdout == "", result.stderr
    return result.code, result.stderr


async def resolve(cfg: Path, reference: str) -> tuple[int, str]:
    result = await call_cli("--config", cfg, "ccv", "resolve", f"--ref={reference}", "--not-sent")
    return result.code, result.stderr


@pytest.mark.parametrize(
    "answer",
    [
        # Larger than reconciler reads: its body is not read, its Location was lost with it.
        Reply(200, b"x" * (MAX_ANSWER_BYTES + 1), headers={"Location": MADE}),
        # A POST's "made, see there", in a gzip that is none.
        Reply(303, b"not gzip", headers={"Location": MADE, "Content-Encoding": "gzip"}),
    ],
    ids=["200-too-large", "303-undecodable"],
)
async def test_an_answer_whose_body_cannot_be_read_keeps_its_location(
    tmp_path: Path, fake: FakeCCVWrites, answer: Reply
) -> None:
    fake.submit_replies = [answer]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    code, stderr = await submitted(cfg, "big-1")
    assert code == 75 and "--not-sent" not in stderr, stderr
    assert query(tmp_path, "SELECT state, location FROM submissions") == [
        ("uncertain", f"{fake.base_url}{MADE}")
    ]
    code, stderr = await resolve(cfg, "big-1")
    assert code == 65 and f"Location {fake.base_url}{MADE}" in stderr, stderr
    assert query(tmp_path, "SELECT state FROM submissions") == [("uncertain",)]


@pytest.mark.parametrize(
    "body",
    ['{"orderId": "ORD 7/2"}', '{"orderId": "a-1", "orderId": "b-2"}'],
    ids=["unusable", "twice"],
)
async def test_a_200_naming_its_order_under_an_unusable_id_is_not_closable(
    tmp_path: Path, fake: FakeCCVWrites, body: str
) -> None:
    fake.submit_replies = [Reply(200, body, "application/json")]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    code, stderr = await submitted(cfg, "odd-2")
    assert code == 75 and "--not-sent" not in stderr, stderr
    code, stderr = await resolve(cfg, "odd-2")
    assert code == 65 and "cannot use" in stderr, stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [
        ("uncertain", "unusable_order_id")
    ]


async def test_a_200_naming_no_order_stays_closable(tmp_path: Path, fake: FakeCCVWrites) -> None:
    # (A nested order id names an order: test_submit_resolve_not_sent.py.)
    fake.submit_replies = [json_reply(200, {"result": {"accepted": True}})]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    code, stderr = await submitted(cfg, "page-3")
    assert code == 75 and "reconciler ccv resolve --ref page-3 --not-sent" in advised(stderr)
    assert (await resolve(cfg, "page-3"))[0] == 0


async def test_through_the_daemon_a_200_naming_an_order_followed_elsewhere_advises_relink(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "R-1")).code == 0
    fake.submit_replies = [json_reply(200, {"orderId": ORDER})]
    async with daemon_here(cfg):
        await listening(port)
        code, stderr = await submitted(cfg, "R-2")
        assert code == 75, stderr
        # --not-sent would be refused; `track` without --relink too.
        assert advised(stderr) == ["reconciler track ccv ID --ref R-2 --relink"], stderr
        code, stderr = await resolve(cfg, "R-2")
        assert code == 65 and "track ccv ID --ref R-2 --relink" in stderr, stderr
    relinked = await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "R-2", "--relink")
    assert relinked.code == 0, relinked.stderr
    assert query(tmp_path, "SELECT state FROM submissions WHERE external_reference = 'R-2'") == [
        ("resolved",)
    ]


async def test_through_the_daemon_a_notification_before_the_answer_is_not_advised_away(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    port, receiver_port = free_port(), free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port, receiver_port=receiver_port))
    fake.submit_hold = asyncio.Event()
    fake.submit_replies = [json_reply(200, {"result": "ok"})]  # names no order
    async with daemon_here(cfg):
        await listening(port)
        await listening(receiver_port)
        pending = asyncio.ensure_future(submitted(cfg, "N-1"))
        await fake.wait_until(lambda: len(fake.submits) == 1, 10)
        await notify(receiver_port, "N-1")  # CCV has an order of it
        await poll_until(
            lambda: query(tmp_path, "SELECT count(*) FROM pending_references") == [(1,)],
            10,
            "the notification remembered",
        )
        fake.submit_hold.set()
        code, stderr = await pending
        assert code == 75 and "--not-sent" not in stderr, stderr
        code, stderr = await resolve(cfg, "N-1")
        assert code == 65 and "notification" in stderr, stderr


@pytest.mark.parametrize("daemon", [False, True], ids=["local", "daemon"])
async def test_a_reference_submitted_already_is_advised_as_stored(
    tmp_path: Path, fake: FakeCCVWrites, daemon: bool
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    # CCV said it created the order (not closable), and a 5xx (closable).
    fake.submit_replies = [json_reply(201, {"result": "ok"}), Reply(500, "oops")]
    async with daemon_here(cfg) if daemon else _nothing():
        if daemon:
            await listening(port)
        assert (await submitted(cfg, "made-4"))[0] == 75
        assert (await submitted(cfg, "lost-4"))[0] == 75
        code, stderr = await submitted(cfg, "made-4")
        assert code == 65 and "submitted already" in stderr, stderr
        assert advised(stderr) == ["reconciler track ccv ID --ref made-4"], stderr
        code, stderr = await submitted(cfg, "lost-4")
        assert code == 65 and "submitted already" in stderr, stderr
        assert "reconciler ccv resolve --ref lost-4 --not-sent" in advised(stderr), stderr
    assert len(fake.submits) == 2


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("reference", ["INV 7", "--not-sent", "-x;y"])
async def test_the_commands_advised_run_as_printed(
    tmp_path: Path, fake: FakeCCVWrites, reference: str
) -> None:
    fake.submit_replies = [Reply(502, "bad gateway"), Reply(201, "")]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    code, stderr = await submitted(cfg, reference)
    assert code == 75, stderr
    track, not_sent = advised(stderr)
    done = await call_cli("--config", cfg, *shlex.split(not_sent)[1:])
    assert done.code == 0, done.stderr
    # Free again; this time CCV says it created it: refused, naming the `track` that settles it.
    assert (await submitted(cfg, reference))[0] == 75
    refused = await call_cli("--config", cfg, *shlex.split(not_sent)[1:])
    assert refused.code == 65, refused.stderr
    (told,) = re.findall(r"`(reconciler track [^`]*)`", refused.stderr)
    assert told == track
    tracked = await call_cli("--config", cfg, *shlex.split(track.replace("ID", ORDER))[1:])
    assert tracked.code == 0, tracked.stderr
    assert query(tmp_path, "SELECT external_reference FROM orders") == [(reference,)]
