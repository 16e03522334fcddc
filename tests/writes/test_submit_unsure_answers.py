"""CCV answers to a submit that do not say which order was made: a 3xx (the order may be made,
"see there"), an id that is our API key, an id named twice. Each leaves the submission
uncertain, never sent again, and nothing of the key kept. A submit that never left (its TLS
handshake never ended) failed and may be sent again. Refused at the door: an external reference
with outer white space (a header, a file's field and the notification URL would each name it
without) and a key differing only in case from one reconciler sets. Through the daemon, the
command waits as long as the account may take, names the reference when it gives up, and tells
the daemon's own refusals (its body limit) from CCV's."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.commands.ccv_submit import api_wait_s
from reconciler.config import load_config
from reconciler.store import WriterLock
from tests.conftest import (
    call_cli,
    daemon_here,
    free_port,
    read_events,
    write_config,
)
from tests.fake_ccv_writes import SUBMIT_PATH, FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import CCV_KEY, Reply
from tests.server.test_api import TOKEN, api_toml, serve_api
from tests.writes.test_submit_crash import UNCERTAIN, listening, query

SEE_OTHER = Reply(303, "", headers={"Location": f"{SUBMIT_PATH}/0b7c2a4e-77/status"})


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


async def test_a_303_is_uncertain_and_the_reference_is_not_sent_twice(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [SEE_OTHER]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="see-1")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "HTTP 303" in result.stderr and "see-1 is uncertain" in result.stderr
    assert f"{fake.base_url}{SUBMIT_PATH}/0b7c2a4e-77/status" in result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("uncertain", "http_303")]
    assert [e["data"]["reason"] for e in read_events(tmp_path) if e["type"] == UNCERTAIN] == [
        "http_303"
    ]
    again = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert again.code == 65 and "submitted already" in again.stderr
    assert len(fake.submits) == 1  # CCV got it once


async def test_the_api_passes_a_3xx_back_with_its_location(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [SEE_OTHER]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = submit_body(externalReference="see-2")
    async with serve_api(tmp_path, fake) as api:
        url = f"{api.url}/api/v1/ccv/orders"
        async with api.http.post(url, json=body, headers=headers, allow_redirects=False) as r:
            assert r.status == 303
            # Absolute, at CCV: relative, it would point into reconciler's API.
            assert r.headers["Location"] == f"{fake.base_url}{SUBMIT_PATH}/0b7c2a4e-77/status"
            assert r.headers["Reconciler-Submission-State"] == "uncertain"
        async with api.http.post(url, json=body, headers=headers) as again:
            assert again.status == 409
            assert again.headers["Reconciler-Submission-State"] == "uncertain"
    assert len(fake.submits) == 1


@pytest.mark.parametrize(
    "reply",
    [
        json_reply(201, {"orderId": CCV_KEY}),
        # Cut short where it holds a digit: a start of letters joined by `-_.` is words.
        json_reply(201, {"orderId": "id-" + CCV_KEY[:17]}),
        Reply(201, '{"orderId": "a-1", "orderId": "b-2"}', "application/json"),
        Reply(201, '{"id": "c-3", "orderId": "a-1", "orderId": "b-2"}', "application/json"),
    ],
    ids=["key", "key-cut", "twice", "twice-and-id"],
)
async def test_an_id_holding_the_key_or_named_twice_is_no_order_id(
    tmp_path: Path, fake: FakeCCVWrites, reply: Reply
) -> None:
    fake.submit_replies = [reply]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="odd-id")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "odd-id is uncertain" in result.stderr
    assert query(tmp_path, "SELECT state, order_id FROM submissions") == [("uncertain", None)]
    assert query(tmp_path, "SELECT count(*) FROM orders") == [(0,)]
    # CCV named its order, under an id reconciler cannot use: not `no_order_id`, which proves
    # nothing (tests/writes/test_submit_advice.py).
    assert [e["data"]["reason"] for e in read_events(tmp_path) if e["type"] == UNCERTAIN] == [
        "unusable_order_id"
    ]
    kept = (tmp_path / "events.jsonl").read_text() + result.stderr
    assert CCV_KEY[:8] not in kept


@pytest.mark.parametrize("ref", [" INV-1", "INV-1 ", "\u00a0INV-1", "INV-1\u3000"])
async def test_a_new_reference_with_outer_white_space_is_refused(
    tmp_path: Path, fake: FakeCCVWrites, ref: str
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference=ref)).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 65 and "white space" in result.stderr, result.stderr
    # (`track --ref` and the API's POST /orders take a reference as stored: one an older
    # release stored so still settles; tests/writes/test_submit_daemon_answers.py)
    url = await call_cli("--config", cfg, "notification-url", "ccv", "--ref", ref)
    assert url.code == 65 and "white space" in url.stderr, url.stderr
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        serve_api(tmp_path, fake) as api,
        api.http.post(
            f"{api.url}/api/v1/ccv/orders", json=submit_body(externalReference=ref), headers=headers
        ) as r,
    ):
        assert r.status == 422 and (await r.json())["field"] == "externalReference"
    assert fake.submits == []
    assert query(tmp_path, "SELECT count(*) FROM submissions") == [(0,)]


@pytest.mark.parametrize(("timeout", "wait_s"), [("2s", 120.0), ("5m", 930.0)])
def test_through_the_daemon_the_command_waits_as_long_as_the_account_may_take(
    tmp_path: Path, fake: FakeCCVWrites, timeout: str, wait_s: float
) -> None:
    # The daemon may take the submit's turn behind the account's requests, its own attempt
    # (up to `timeout`) and the recording: a command that gives up sooner leaves the daemon
    # sending while its caller hears nothing (a fixed 120 s before).
    extra = f'api_key = "{CCV_KEY}"'
    cfg = write_config(tmp_path, ccv=fake, ccv_extra=extra, extra=api_toml(free_port()))
    cfg.write_text(cfg.read_text().replace('timeout = "2s"', f'timeout = "{timeout}"', 1))
    (account,) = load_config(cfg).ccv
    assert api_wait_s(account) == wait_s


async def test_a_daemon_answer_that_does_not_come_names_the_reference_to_look_up(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # The daemon's API takes the submit and its connection drops (the daemon stopped, say):
    # whether CCV got it is not known, and the file has no reference of its own.
    got: list[dict[str, object]] = []

    async def dropped(request: web.Request) -> web.StreamResponse:
        got.append(await request.json())
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    app = web.Application()
    app.router.add_post("/api/v1/ccv/orders", dropped)
    daemon_api = TestServer(app, host="127.0.0.1", port=port)
    await daemon_api.start_server()
    lock = WriterLock(tmp_path / "reconciler.db")
    lock.acquire()  # the daemon holds the store: the command goes through its API
    try:
        stdin = json.dumps(submit_body()).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    finally:
        lock.release()
        await daemon_api.close()
    assert (result.code, result.stdout) == (75, ""), result.stderr
    ((ref,),) = [(body["externalReference"],) for body in got]
    assert isinstance(ref, str) and f"external reference {ref}" in result.stderr
    assert "reconciler status" in result.stderr and f"track ccv ID --ref {ref}" in result.stderr
    assert "would get a new one" in result.stderr and "submit_uncertain" not in result.stderr


async def test_the_daemons_own_body_limit_is_told_as_its_own(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # Over the [api] max_body (4096 in these tests) but far under the command's own 16 MiB.
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    stdin = json.dumps(submit_body(externalReference="big-1", order={"notes": "x" * 8000}))
    async with daemon_here(cfg):
        await listening(port)
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin.encode())
    assert (result.code, result.stdout) == (65, ""), result.stderr
    assert "the daemon's API refused the submit (HTTP 413)" in result.stderr
    assert "max_body, 4096 bytes" in result.stderr and "submit answered" not in result.stderr
    assert fake.submits == []


async def test_a_json_refusal_of_the_daemons_api_is_one_masked_bounded_line(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # The API's JSON error echoes what it was sent: its text was printed as it came, line
    # breaks, terminal escapes and the key included, however long.
    error = f"bad body:\nkey {CCV_KEY}\x1b[2J\x07 " + "x" * 2000

    async def refuses(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": error, "field": "order"}, status=400)

    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    app = web.Application()
    app.router.add_post("/api/v1/ccv/orders", refuses)
    daemon_api = TestServer(app, host="127.0.0.1", port=port)
    await daemon_api.start_server()
    lock = WriterLock(tmp_path / "reconciler.db")
    lock.acquire()  # the daemon holds the store: the command goes through its API
    try:
        stdin = json.dumps(submit_body(externalReference="refused-1")).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    finally:
        lock.release()
        await daemon_api.close()
    assert (result.code, result.stdout) == (65, ""), result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "refused the submit" in x]
    assert line.startswith(
        "reconciler: error: the daemon's API refused the submit (HTTP 400): order: bad body: key "
    )
    assert CCV_KEY not in result.stderr and "\x1b" not in line and "\x07" not in line
    assert len(line) < 700 and "bad body:\n" not in result.stderr
    assert fake.submits == []


async def test_a_submit_whose_tls_handshake_never_ends_was_not_sent(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # The TCP connection is taken (the kernel's backlog), the handshake never answered: nothing
    # of the request left, so the submit failed and may be sent again, with the same reference.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
        cfg.write_text(
            cfg.read_text()
            .replace(fake.base_url, f"https://127.0.0.1:{silent.getsockname()[1]}")
            .replace('timeout = "2s"', 'timeout = "500ms"', 1)
        )
        stdin = json.dumps(submit_body(externalReference="tls-1")).encode()
        for _ in range(2):
            result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
            assert (result.code, result.stdout) == (75, ""), result.stderr
            assert "could not be reached (connect timeout)" in result.stderr, result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [
        ("failed", "connect timeout"),
        ("failed", "connect timeout"),
    ]
    assert [e for e in read_events(tmp_path) if e["type"] == UNCERTAIN] == []


async def test_a_refusal_whose_body_never_comes_is_a_refusal(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # CCV's 400 status line came, its body stalled past the timeout: taken for a lost answer,
    # the submit was uncertain and its reference blocked (409) until a person's word.
    done = asyncio.Event()

    async def stalled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        await done.wait()  # the body never comes; the test's end closes the connection
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(stalled, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
        cfg.write_text(
            cfg.read_text()
            .replace(fake.base_url, f"http://127.0.0.1:{port}")
            .replace('timeout = "2s"', 'timeout = "500ms"', 1)
        )
        stdin = json.dumps(submit_body(externalReference="stall-1")).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    finally:
        done.set()
        server.close()
        await server.wait_closed()
    assert (result.code, result.stdout) == (65, ""), result.stderr
    assert query(tmp_path, "SELECT state, http_status FROM submissions") == [("failed", 400)]
    assert [e for e in read_events(tmp_path) if e["type"] == UNCERTAIN] == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"StatusNotificationInformation": {"notificationUrl": "https://elsewhere.example/"}},
            "StatusNotificationInformation",
        ),
        (
            {"statusNotificationInformation": {"NotificationURL": "https://elsewhere.example/"}},
            "statusNotificationInformation.NotificationURL",
        ),
        (
            {"statusNotificationInformation": {"notifyonstatus": ["Cancelled"]}},
            "statusNotificationInformation.notifyonstatus",
        ),
        ({"ExternalReference": "other-1"}, "ExternalReference"),
        # Dotless i: casefold() keeps it apart from `i`, Java's equalsIgnoreCase does not.
        (
            {"statusNotificationInformation": {"notıficationUrl": "https://elsewhere.example/"}},
            "statusNotificationInformation.notıficationUrl",
        ),
    ],
)
async def test_a_key_differing_from_reconcilers_only_in_case_is_refused(
    tmp_path: Path, fake: FakeCCVWrites, changes: dict[str, object], field: str
) -> None:
    # CCV's JSON reader may ignore case and take the caller's notification URL or reference
    # instead of reconciler's.
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    body = submit_body(externalReference="case-1", **changes)
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=json.dumps(body).encode())
    assert result.code == 65 and f"{field}: differs from" in result.stderr, result.stderr
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with serve_api(tmp_path, fake) as api:
        answer = await api.http.post(f"{api.url}/api/v1/ccv/orders", json=body, headers=headers)
        assert (answer.status, (await answer.json())["field"]) == (422, field)
    assert fake.submits == []


async def test_a_submit_answered_in_an_encoding_that_cannot_be_decoded_is_uncertain(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # Brotli, which aiohttp cannot decode here: CCV (or a proxy) got the submit and answered,
    # a `201 Created`, its status kept (read_body names the coding it cannot decode).
    fake.submit_replies = [
        Reply(201, b"\x0b\x02\x80{}\x03", "application/json", {"Content-Encoding": "br"})
    ]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="br-1")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "br-1 is uncertain" in result.stderr
    assert query(tmp_path, "SELECT state, http_status, reason FROM submissions") == [
        ("uncertain", 201, "answer_unread")
    ]
    word = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "br-1", "--not-sent")
    assert word.code == 65 and "HTTP 201 Created" in word.stderr, word.stderr
    again = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert again.code == 65 and "submitted already" in again.stderr
    assert len(fake.submits) == 1  # CCV got it once
