"""`reconciler ccv resolve --ref REF --not-sent`: an operator who knows CCV never made the
order of an uncertain submit (nothing at CCV under its reference) closes it; the reference is
free again, with one `order.submit_resolved` (`how` `not_sent`). Without it such a submit was
uncertain for ever: no notification comes, there is no order to track, and retention keeps it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import call_cli, daemon_here, free_port, poll_until, read_events, write_config
from tests.fake_ccv_writes import DROP, FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import Reply
from tests.server.test_api import ORDER, Api, api_toml
from tests.writes.test_submit_crash import listening, query

RESOLVED = "order.submit_resolved"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


async def lost(cfg: Path, fake: FakeCCVWrites, ref: str) -> bytes:
    """Submit `ref` and lose CCV's answer: the submit is uncertain; return the body sent."""
    fake.submit_replies = [Reply(DROP)]
    stdin = json.dumps(submit_body(externalReference=ref)).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 75, result.stderr
    assert f"ccv resolve --ref {ref} --not-sent" in result.stderr
    return stdin


async def test_not_sent_closes_it_and_frees_the_reference(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = await lost(cfg, fake, "gone-1")
    status = await call_cli("--config", cfg, "status")
    assert "`reconciler ccv resolve --ref REF --not-sent`" in status.stdout, status.stdout
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "gone-1", "--not-sent")
    assert result.code == 0, result.stderr
    assert "gone-1 not sent" in result.stdout
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("failed", "not_sent")]
    (event,) = [e for e in read_events(tmp_path) if e["type"] == RESOLVED]
    assert (event["data"]["how"], event["data"]["external_reference"]) == ("not_sent", "gone-1")
    assert event["data"]["order_id"] is None
    # Settled once: the same word again, or about a reference never submitted, is refused.
    again = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "gone-1", "--not-sent")
    assert again.code == 65 and "failed, not uncertain" in again.stderr, again.stderr
    never = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "never-1", "--not-sent")
    assert never.code == 65 and "nothing was submitted" in never.stderr, never.stderr
    # The reference may be submitted again, and is.
    resubmit = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert resubmit.code == 0 and resubmit.stdout.strip() in fake.orders, resubmit.stderr
    assert len(fake.submits) == 2


# A 2xx naming no order proves nothing (a gateway's login or maintenance page served with 200,
# CCV's own error object under 200): as for a lost answer, a person's word settles it, and the
# advice given names that word. Not a 201 nor one with a `Location` (test_submit_not_sent_refused).
NAMING_NO_ORDER = [
    Reply(200, "<html><body>Please log in</body></html>", "text/html"),
    json_reply(200, {"error": "invalid order"}),
    json_reply(200, {"result": "ok"}),
    # ids inside an error object name no order CCV made
    json_reply(200, {"errors": [{"id": "E42", "orderId": "x-1"}], "error": {"id": 7}}),
    # an empty `Location` points nowhere (joined to the URL asked, it read as the order's)
    Reply(200, "<html><body>Please log in</body></html>", "text/html", headers={"Location": ""}),
    # nor one that joined points back at the URL asked
    Reply(200, "<html><body>Please log in</body></html>", "text/html", headers={"Location": "?"}),
    Reply(200, "<html><body>Log in</body></html>", "text/html", headers={"Location": "#top"}),
]


@pytest.mark.parametrize(
    "answer",
    NAMING_NO_ORDER,
    ids=[
        "html",
        "error",
        "no-id",
        "nested-error-ids",
        "empty-location",
        "query-location",
        "fragment-location",
    ],
)
async def test_a_2xx_naming_no_order_is_closed_by_a_persons_word(
    tmp_path: Path, fake: FakeCCVWrites, answer: Reply
) -> None:
    fake.submit_replies = [answer]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="page-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert "ccv resolve --ref page-1 --not-sent" in submitted.stderr
    status = await call_cli("--config", cfg, "status")
    assert "`reconciler ccv resolve --ref REF --not-sent`" in status.stdout, status.stdout
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "page-1", "--not-sent")
    assert result.code == 0, result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("failed", "not_sent")]
    (event,) = [e for e in read_events(tmp_path) if e["type"] == RESOLVED]
    assert (event["data"]["how"], event["data"]["reason"]) == ("not_sent", "no_order_id")
    # The reference is free again: the same file goes out, and its order is followed.
    resubmit = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert resubmit.code == 0 and resubmit.stdout.strip() in fake.orders, resubmit.stderr


async def test_a_2xx_naming_no_order_is_closed_through_the_api(
    api: Api, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [NAMING_NO_ORDER[1]]  # JSON: the test's client reads the answer
    body = submit_body(externalReference="page-2")
    status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (status, headers["Reconciler-Submission-State"]) == (200, "uncertain")
    word = {"external_reference": "page-2", "sent": False}
    status, document, _ = await api.call("POST", "/api/v1/ccv/submissions/resolve", body=word)
    assert status == 200, document
    assert (document["state"], document["reason"]) == ("failed", "not_sent")
    status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert status == 201 and headers["Reconciler-Order-Id"] in fake.orders


@pytest.mark.parametrize("status", [200, 201])
async def test_a_2xx_naming_an_order_followed_elsewhere_is_not_closed(
    tmp_path: Path, fake: FakeCCVWrites, status: int
) -> None:
    # CCV named the order it made (followed under another reference): "not sent" would be
    # false, through the command line and the API alike.
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "R-1")).code == 0
    fake.submit_replies = [json_reply(status, {"orderId": ORDER})]
    stdin = json.dumps(submit_body(externalReference="made-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert "--not-sent" not in submitted.stderr, submitted.stderr  # not advised: refused
    args = ("--config", cfg, "ccv", "resolve", "--ref", "made-1", "--not-sent")
    result = await call_cli(*args)
    assert result.code == 65 and "it has the order" in result.stderr, result.stderr
    assert ORDER in result.stderr and "R-1" in result.stderr
    async with daemon_here(cfg):
        await listening(port)
        through = await call_cli(*args)
        assert through.code == 65 and "it has the order" in through.stderr, through.stderr
    assert query(tmp_path, "SELECT state FROM submissions") == [("uncertain",)]
    assert [e for e in read_events(tmp_path) if e["type"] == RESOLVED] == []


@pytest.mark.parametrize(
    "answer",
    [
        [{"orderId": ORDER}],
        {"data": {"order": {"OrderId": ORDER}}},
        # a bare `id` nested names an order too: taken for none, the reference would be sent
        # again (a second order); an item's id taken for the order's costs the reference alone
        {"order": {"id": ORDER}},
        [{"id": ORDER}],
    ],
    ids=["list", "deep", "order-id", "list-id"],
)
async def test_a_200_naming_its_order_nested_is_not_closed(
    tmp_path: Path, fake: FakeCCVWrites, answer: object
) -> None:
    # A shape the documents do not show, so not followed; but CCV named the order it made, and
    # "not sent" then a second submit of the reference would make a second order.
    fake.submit_replies = [json_reply(200, answer)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="nested-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75 and "--not-sent" not in submitted.stderr, submitted.stderr
    args = ("--config", cfg, "ccv", "resolve", "--ref", "nested-1", "--not-sent")
    result = await call_cli(*args)
    assert result.code == 65 and "it has the order" in result.stderr, result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [
        ("uncertain", "unusable_order_id")
    ]
    assert (await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)).code != 0
    assert len(fake.submits) == 1


async def test_through_a_running_daemon(tmp_path: Path, fake: FakeCCVWrites) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    await lost(cfg, fake, "gone-2")
    async with daemon_here(cfg):
        await listening(port)
        args = ("--config", cfg, "ccv", "resolve", "--ref", "gone-2", "--not-sent")
        result = await call_cli(*args)
        assert result.code == 0, result.stderr
        assert query(tmp_path, "SELECT state FROM submissions") == [("failed",)]
        again = await call_cli(*args)
        assert again.code == 65 and "not uncertain" in again.stderr, again.stderr
        await poll_until(
            lambda: any(e["type"] == RESOLVED for e in read_events(tmp_path)), 10, "event"
        )


async def test_the_word_is_required(tmp_path: Path, fake: FakeCCVWrites) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "gone-3")
    assert result.code == 2 and "--not-sent" in result.stderr


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://u:pw9@x.example/o/1", "http://x.example/o/1"),
        # no URL to yarl (a port out of range): kept as it came, less its user and password
        ("https://u:pw9@ccv.example:99999/o/1", "https://ccv.example:99999/o/1"),
    ],
)
async def test_a_locations_user_and_password_are_kept_nowhere(
    tmp_path: Path, fake: FakeCCVWrites, given: str, kept: str
) -> None:
    fake.submit_replies = [Reply(303, "", "text/plain", headers={"Location": given})]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="page-3")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert query(tmp_path, "SELECT location FROM submissions") == [(kept,)]
    assert "pw9" not in submitted.stderr
    assert not any("pw9" in json.dumps(e) for e in read_events(tmp_path))


async def test_a_location_asking_the_submit_url_for_an_order_points_at_it(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # Only the URL asked itself (`?`, `#top`) is no place: another query on it names an order.
    fake.submit_replies = [Reply(200, "", "text/plain", headers={"Location": "?orderId=ORD-8"})]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="page-4")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert "--not-sent" not in submitted.stderr
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "page-4", "--not-sent")
    assert result.code == 65, result.stderr
    assert "orderId=ORD-8" in result.stderr
