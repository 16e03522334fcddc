"""Probe 44: a CCV submit's answer read as CCV meant it. A `Location` after an empty one or one
pointing back at the submit URL is where the order is (was lost: `--not-sent` taken, the
reference submitted again, a second order). Real fakes of CCV on 127.0.0.1, a real SQLite file,
the real command line and the daemon's API."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.store import WriterLock
from reconciler.writes.submit_outcome import (
    NOT_SENT_REFUSED_HEADER,
    OWN_HEADER,
    STATE_HEADER,
    own_from_header,
)
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import SUBMIT_PATH, FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import Raw, Reply
from tests.server.test_api import TOKEN, api_toml, serve_api
from tests.writes.test_submit_crash import query

ORDER = f"{SUBMIT_PATH}/ord-3"
BROKEN_CHUNK = b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\nZZ\r\n"
# The first Location line of each points nowhere, or back at the submit URL itself.
FIRST_LINES = {
    "empty": b"Location:\r\n",
    "blank": b"Location:   \r\n",
    "query": b"Location: ?\r\n",
    "fragment": b"Location: #top\r\n",
    "submit-url": b"Location: " + SUBMIT_PATH.encode() + b"\r\n",
}


def see_other(first: bytes, rest: bytes = b"Content-Length: 0\r\n\r\n") -> Raw:
    return Raw(
        raw=b"HTTP/1.1 303 See Other\r\n" + first + b"Location: " + ORDER.encode() + b"\r\n" + rest
    )


@pytest.mark.parametrize("first", list(FIRST_LINES))
@pytest.mark.parametrize("body", ["whole", "broken-chunk"])
async def test_a_location_after_one_pointing_nowhere_is_kept_and_refuses_not_sent(
    tmp_path: Path, fake: FakeCCVWrites, first: str, body: str
) -> None:
    rest = BROKEN_CHUNK if body == "broken-chunk" else b"Content-Length: 0\r\n\r\n"
    fake.submit_replies = [see_other(FIRST_LINES[first], rest)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="two-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert f"(Location: {fake.base_url}{ORDER})" in submitted.stderr, submitted.stderr
    assert "--not-sent" not in submitted.stderr, submitted.stderr
    assert query(tmp_path, "SELECT state, http_status, location FROM submissions") == [
        ("uncertain", 303, fake.base_url + ORDER)
    ]
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "two-1", "--not-sent")
    assert result.code == 65 and "HTTP 303 See Other and Location" in result.stderr, result.stderr
    again = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert again.code == 65 and "submitted already" in again.stderr, again.stderr
    assert len(fake.submits) == 1


async def test_of_two_locations_pointing_elsewhere_the_first_is_kept(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [see_other(b"Location: /elsewhere/o-9\r\n")]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="two-2")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert query(tmp_path, "SELECT location FROM submissions") == [
        (fake.base_url + "/elsewhere/o-9",)
    ]


@pytest.mark.parametrize("body", ["whole", "broken-chunk"])
async def test_the_daemon_refuses_not_sent_for_such_an_answer(
    tmp_path: Path, fake: FakeCCVWrites, body: str
) -> None:
    rest = BROKEN_CHUNK if body == "broken-chunk" else b"Content-Length: 0\r\n\r\n"
    fake.submit_replies = [see_other(b"Location:\r\n", rest)]
    document = submit_body(externalReference="two-3")
    async with serve_api(tmp_path, fake) as api:
        async with api.http.post(
            f"{api.url}/api/v1/ccv/orders",
            json=document,
            headers={"Authorization": f"Bearer {TOKEN}"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == fake.base_url + ORDER
            refused = own_from_header(response.headers[NOT_SENT_REFUSED_HEADER])
            assert "HTTP 303 See Other and Location" in refused
        word = {"external_reference": "two-3", "sent": False}
        status, answer, _ = await api.call("POST", "/api/v1/ccv/submissions/resolve", body=word)
        assert status == 409, answer
        assert (await api.call("POST", "/api/v1/ccv/orders", body=document))[0] == 409
    assert len(fake.submits) == 1


# A 2xx naming its order under an id reconciler cannot use (`unusable_order_id`): CCV made it,
# and neither `--not-sent` nor `track` could close it: it stayed uncertain for ever.
UNUSABLE = {
    "space-and-slash": {"orderId": "ORD 7/2"},
    "slash": {"orderId": "ab/cd"},
    "nested": [{"orderId": "o-1"}],
}
RESOLVED_HOW = "SELECT json_extract(body, '$.data.how') FROM events WHERE type = ?"


@pytest.mark.parametrize("answer", list(UNUSABLE))
async def test_an_order_named_under_an_unusable_id_is_closed_by_a_persons_word_that_ccv_made_it(
    tmp_path: Path, fake: FakeCCVWrites, answer: str
) -> None:
    fake.submit_replies = [json_reply(200, UNUSABLE[answer])]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="ord-7")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert "`reconciler ccv resolve --ref ord-7 --made`" in submitted.stderr, submitted.stderr
    assert "--not-sent" not in submitted.stderr and "track ccv" not in submitted.stderr
    status = await call_cli("--config", cfg, "status")
    assert "--made" in status.stdout, status.stdout
    word = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "ord-7", "--not-sent")
    assert word.code == 65, word.stderr
    assert "`reconciler ccv resolve --ref ord-7 --made`" in word.stderr, word.stderr
    made = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "ord-7", "--made")
    assert made.code == 0, made.stderr
    assert "ord-7 made" in made.stdout and "stays taken" in made.stdout
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [
        ("resolved", "unusable_order_id")
    ]
    assert query(tmp_path, RESOLVED_HOW, "order.submit_resolved") == [("made",)]
    status = await call_cli("--config", cfg, "status")
    assert "ord-7" not in status.stdout, status.stdout
    again = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "ord-7", "--made")
    assert again.code == 65 and "is resolved, not uncertain" in again.stderr, again.stderr
    resubmitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert resubmitted.code == 65 and "submitted already" in resubmitted.stderr
    assert len(fake.submits) == 1
    assert query(tmp_path, RESOLVED_HOW, "order.submit_resolved") == [("made",)]


async def test_the_daemon_takes_made_and_its_refusal_advises_it(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [json_reply(201, {"orderId": "ORD 7/2"})]
    document = submit_body(externalReference="ord-8")
    async with serve_api(tmp_path, fake) as api:
        status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=document)
        assert (status, headers[STATE_HEADER]) == (201, "uncertain")
        refused = own_from_header(headers[NOT_SENT_REFUSED_HEADER])
        assert "`reconciler ccv resolve --ref ord-8 --made`" in refused, refused
        resolve = "/api/v1/ccv/submissions/resolve"
        both = {"external_reference": "ord-8", "sent": False, "made": True}
        status, answer, _ = await api.call("POST", resolve, body=both)
        assert (status, answer["field"]) == (422, "made"), answer
        word = {"external_reference": "ord-8", "made": True}
        status, answer, _ = await api.call("POST", resolve, body=word)
        assert (status, answer["state"], answer["reason"]) == (
            200,
            "resolved",
            "unusable_order_id",
        ), answer
        status, answer, _ = await api.call("POST", resolve, body=word)
        assert status == 404, answer
        assert (await api.call("POST", "/api/v1/ccv/orders", body=document))[0] == 409
    assert len(fake.submits) == 1


@pytest.mark.parametrize(
    "answer",
    [{"orderId": ""}, {"orderId": "  "}, {"orderId": "", "id": ""}, [{"OrderId": "\t"}]],
    ids=["empty", "blank", "both-empty", "nested-blank"],
)
async def test_an_empty_order_id_names_no_order_and_is_closed_as_not_sent(
    tmp_path: Path, fake: FakeCCVWrites, answer: object
) -> None:
    # It was `unusable_order_id`: `--not-sent` refused for an answer that proves nothing.
    fake.submit_replies = [json_reply(200, answer)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="blank-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert "--not-sent" in submitted.stderr, submitted.stderr
    assert query(tmp_path, "SELECT reason FROM submissions") == [("no_order_id",)]
    word = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "blank-1", "--not-sent")
    assert word.code == 0, word.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("failed", "not_sent")]


async def test_a_blank_first_id_leaves_the_next_field_to_read(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [json_reply(201, {"orderId": " ", "id": "o-12"})]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="blank-2")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (submitted.code, submitted.stdout) == (0, "o-12\n"), submitted.stderr


@pytest.mark.parametrize("lines", [b"\r\n", b"\r\n\r\n\r\n", b"\n\n"])
async def test_an_answer_of_blank_lines_only_is_a_lost_one_a_person_may_close(
    tmp_path: Path, fake: FakeCCVWrites, lines: bytes
) -> None:
    # It was `answer_head_unread` (an answer began as HTTP): `--not-sent` refused for ever,
    # and no order at CCV to track.
    fake.submit_replies = [Raw(raw=lines)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="crlf-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert "answer_head_unread" not in submitted.stderr, submitted.stderr
    assert "--not-sent" in submitted.stderr, submitted.stderr
    word = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "crlf-1", "--not-sent")
    assert word.code == 0, word.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("failed", "not_sent")]


@pytest.mark.parametrize("status", [400, 422])
async def test_a_refusal_after_a_notification_for_the_reference_keeps_it_taken(
    tmp_path: Path, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    # It was `failed`, `http_400`, with `notified_at` set: the reference free, no warning, and a
    # new submit of it a second order of a reference CCV said it has.
    caplog.set_level(logging.WARNING, logger="reconciler.writes.submit")
    fake.submit_hold = asyncio.Event()
    fake.submit_replies = [json_reply(status, {"error": "orderLines: required"})]
    document = submit_body(externalReference="said-1")
    async with serve_api(tmp_path, fake) as api:
        pending = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
        await fake.wait_until(lambda: len(fake.submits) == 1, 10)
        await api.daemon.hub.check_ccv_reference("default", "said-1", 0.0)
        fake.submit_hold.set()
        answered, body, headers = await pending
        assert (answered, body) == (status, {"error": "orderLines: required"})
        assert headers[STATE_HEADER] == "resolved"
        own = own_from_header(headers[OWN_HEADER])
        assert f"CCV refused the submit (HTTP {status}), but a CCV notification" in own, own
        assert api.submission("said-1") == ("resolved", None)
        again = await api.call("POST", "/api/v1/ccv/orders", body=document)
        assert again[0] == 409, again
        word = {"external_reference": "said-1", "sent": False}
        assert (await api.call("POST", "/api/v1/ccv/submissions/resolve", body=word))[0] == 404
        types = api.rows("SELECT type FROM events ORDER BY seq")
    assert types == [("order.submit_uncertain",), ("order.submit_resolved",)]
    warned = [r for r in caplog.records if r.getMessage() == "ccv.submit_failed_contradicted"]
    assert len(warned) == 1
    said = getattr(warned[0], "fields", {})
    assert (said["status"], said["reason"]) == (status, f"http_{status}")
    assert len(fake.submits) == 1


async def test_a_refusal_with_no_notification_frees_the_reference(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [json_reply(400, {"error": "orderLines: required"})]
    document = submit_body(externalReference="said-2")
    async with serve_api(tmp_path, fake) as api:
        answered, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=document)
        assert (answered, headers[STATE_HEADER]) == (400, "failed")
        assert (await api.call("POST", "/api/v1/ccv/orders", body=document))[0] == 201


def gzipped_answer(body: bytes) -> Raw:
    head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
    return Raw(raw=head + b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.parametrize("after", [b"junk", b"\x00" * 3, b"\n"])
async def test_a_gzip_answer_with_bytes_after_it_is_read(
    tmp_path: Path, fake: FakeCCVWrites, after: bytes
) -> None:
    # It was undecodable: `answer_unread`, its order unfollowed.
    body = gzip.compress(b'{"orderId": "gz-1"}') + after
    fake.submit_replies = [gzipped_answer(body)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="gz-ref")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (submitted.code, submitted.stdout) == (0, "gz-1\n"), submitted.stderr


async def test_a_gzip_answer_whose_second_member_is_cut_short_is_still_unread(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    member = gzip.compress(b'{"orderId": "gz-2"}')
    fake.submit_replies = [gzipped_answer(member + member[:12])]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="gz-ref2")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert query(tmp_path, "SELECT reason FROM submissions") == [("answer_unread",)]


async def test_an_empty_answer_is_said_as_no_body(tmp_path: Path, fake: FakeCCVWrites) -> None:
    fake.submit_replies = [Reply(303, "", headers={"Location": "/o/5"})]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="empty-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    said = f"reconciler: submit answered HTTP 303 (Location: {fake.base_url}/o/5): (no body)\n"
    assert said in submitted.stderr, submitted.stderr


@pytest.mark.parametrize(
    ("status", "document"), [(201, {}), (200, {}), (200, {"state": "uncertain"}), (500, {})]
)
async def test_ccv_resolve_says_an_answer_not_the_daemons_was_not_understood(
    tmp_path: Path, fake: FakeCCVWrites, status: int, document: dict[str, str]
) -> None:
    # It printed `reconciler: error: None`, or took a foreign service's 200 for the word taken.
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(document, status=status)

    app = web.Application()
    app.router.add_post("/api/v1/ccv/submissions/resolve", answer)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    lock = WriterLock(tmp_path / "reconciler.db")
    lock.acquire()  # the daemon holds the store: the command goes through its API
    try:
        result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "r-1", "--not-sent")
    finally:
        lock.release()
        await server.close()
    assert result.code == 75, result.stderr
    assert f"the daemon's answer was not understood (HTTP {status})" in result.stderr
    assert "None" not in result.stderr and result.stdout == ""
