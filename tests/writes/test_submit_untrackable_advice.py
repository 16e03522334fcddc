"""What `ccv submit` advises for a 2xx it cannot follow comes from the submission as stored
(its `reason`), not from the words of the refusal it would meet: those quote the reference
and CCV's `Location`, and reach the command line redacted and percent-encoded through the
daemon. Through the real command line, the loopback fake CCV and a running daemon."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.store import Store
from reconciler.store.notified import notified
from tests.conftest import call_cli, daemon_here, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import api_toml
from tests.writes.test_submit_crash import listening

# A reference may hold any printable letter: this one quotes the end of `--made`'s advice.
REF = "R --made` closes it"
UNUSABLE = "names an order id field reconciler cannot use"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


@pytest.mark.parametrize("through", [False, True], ids=["here", "daemon"])
async def test_a_201_naming_no_order_advises_track_whatever_its_reference_says(
    tmp_path: Path, fake: FakeCCVWrites, through: bool
) -> None:
    # A 201 naming no order id: CCV made it, and `track ccv ID` with the reference settles it.
    # Taken for an id `track` cannot take, the advice was `--made`, losing the reference.
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    fake.submit_replies = [json_reply(201, {"result": "ok"})]
    stdin = json.dumps(submit_body(externalReference=REF)).encode()
    args = ("--config", cfg, "ccv", "submit", "-")
    if through:
        async with daemon_here(cfg):
            await listening(port)
            submitted = await call_cli(*args, stdin=stdin)
    else:
        submitted = await call_cli(*args, stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert UNUSABLE not in submitted.stderr, submitted.stderr
    assert "`reconciler track ccv ID --ref" in submitted.stderr, submitted.stderr


@pytest.mark.parametrize("through", [False, True], ids=["here", "daemon"])
async def test_an_unusable_order_id_advises_made(
    tmp_path: Path, fake: FakeCCVWrites, through: bool
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    fake.submit_replies = [json_reply(200, {"orderId": "ORD 7/2"})]
    stdin = json.dumps(submit_body(externalReference="odd-1")).encode()
    args = ("--config", cfg, "ccv", "submit", "-")
    if through:
        async with daemon_here(cfg):
            await listening(port)
            submitted = await call_cli(*args, stdin=stdin)
    else:
        submitted = await call_cli(*args, stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert UNUSABLE in submitted.stderr, submitted.stderr
    assert "`reconciler ccv resolve --ref odd-1 --made` closes it" in submitted.stderr


@pytest.mark.parametrize("through", [False, True], ids=["here", "daemon"])
async def test_a_second_submit_of_an_untrackable_one_advises_made_not_track(
    tmp_path: Path, fake: FakeCCVWrites, through: bool
) -> None:
    # An item's id, not the order's: unusable_order_id. The first answer said "names its
    # order" and never what to do where CCV has none; the second submit's 409 (its header
    # Reconciler-Submission-Untrackable: true) advised `track ccv ID --ref C3`, which cannot
    # take that id.
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    fake.submit_replies = [json_reply(200, {"items": [{"id": "line-1"}]})]
    stdin = json.dumps(submit_body(externalReference="C3")).encode()
    args = ("--config", cfg, "ccv", "submit", "-")
    async with daemon_here(cfg) if through else contextlib.nullcontext():
        if through:
            await listening(port)
        first = await call_cli(*args, stdin=stdin)
        second = await call_cli(*args, stdin=stdin)
    made = "`reconciler ccv resolve --ref C3 --made` closes it"
    again = "if CCV has no order of it, close it so too and submit the order again under a new"
    assert first.code == 75, first.stderr
    said = " ".join(first.stderr.split())
    assert "CCV's answer names an order id field reconciler cannot use" in said, said
    assert made in said and again in said, said
    assert second.code == 65, second.stderr
    said = " ".join(second.stderr.split())
    assert "was submitted already (its submit is uncertain)" in said, said
    assert made in said and again in said, said
    assert "track ccv ID" not in said and "--not-sent" not in said, said
    assert len(fake.submits) == 1


async def test_a_second_submit_of_a_refused_one_a_notification_settled_advises_track(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # CCV refused it (400), then its notification came: resolved, CCV has an order of it that
    # nothing follows. A second submit said only "submitted already (its submit is
    # resolved); not sent again".
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    fake.submit_replies = [json_reply(400, {"error": "orderLines: required"})]
    stdin = json.dumps(submit_body(externalReference="B1")).encode()
    args = ("--config", cfg, "ccv", "submit", "-")
    assert (await call_cli(*args, stdin=stdin)).code == 65
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        done = await notified(store, "default", "B1", None, time.time(), remember=False)
    finally:
        await store.close()
    assert done.reason == "http_400"
    second = await call_cli(*args, stdin=stdin)
    assert second.code == 65, second.stderr
    said = " ".join(second.stderr.split())
    assert "was submitted already (its submit is resolved: CCV has an order of it; find it" in said
    assert "run `reconciler track ccv ID --ref B1`" in said, said
    assert len(fake.submits) == 1
