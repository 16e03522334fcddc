"""`ccv submit` through a running daemon reads the daemon's answer as it is: CCV's 3xx passed
back is not followed (followed, CCV's Location would read as the daemon's answer: "refused",
and a file without a reference would be submitted again as a second order); a 5xx of the
daemon's own says nothing of what CCV got; a refusal of the daemon's own is printed masked.
`ccv resolve --ref` takes a reference as stored, outer white space and all."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.store import Store, WriterLock
from reconciler.writes.submit import Submitter
from reconciler.writes.submit_outcome import OWN_HEADER, Result, json_result, own_from_header
from tests.conftest import call_cli, daemon_here, free_port, write_config
from tests.fake_ccv_writes import SUBMIT_PATH, FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import CCV_KEY, Reply
from tests.server.test_api import api_toml, serve_api
from tests.writes.test_submit_crash import listening, query


async def test_ccvs_303_through_the_daemon_is_uncertain_not_followed(tmp_path: Path) -> None:
    async with FakeCCVWrites() as fake:
        fake.submit_replies = [Reply(303, "", headers={"Location": f"{SUBMIT_PATH}/x-1/status"})]
        port = free_port()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
        async with daemon_here(cfg):
            await listening(port)
            stdin = json.dumps(submit_body(externalReference="see-d")).encode()
            result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "HTTP 303" in result.stderr and "refused" not in result.stderr, result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("uncertain", "http_303")]


async def daemon_api_answering(port: int, reply: web.Response) -> TestServer:
    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        return reply

    app = web.Application()
    app.router.add_post("/api/v1/ccv/orders", answer)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    return server


async def submit_through(
    tmp_path: Path, reply: web.Response, reference: str = "five-1"
) -> tuple[int, str]:
    """Submit with a stand-in daemon's API answering `reply`; return the exit code, stderr."""
    async with FakeCCVWrites() as fake:
        port = free_port()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
        server = await daemon_api_answering(port, reply)
        lock = WriterLock(tmp_path / "reconciler.db")
        lock.acquire()  # the daemon holds the store: the command goes through its API
        try:
            stdin = json.dumps(submit_body(externalReference=reference)).encode()
            result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        finally:
            lock.release()
            await server.close()
    assert result.stdout == ""
    return result.code, result.stderr


async def test_a_5xx_of_the_daemons_own_is_not_known_not_refused(tmp_path: Path) -> None:
    code, stderr = await submit_through(tmp_path, web.Response(status=500, text="oops"))
    assert code == 75, stderr
    assert "refused" not in stderr and "not known" in stderr, stderr
    assert "external reference five-1" in stderr


async def test_the_reference_said_is_the_one_sent_not_an_older_daemons_header(
    tmp_path: Path,
) -> None:
    # An older daemon sends the reference as it is; read as percent-encoded, `50%25-off` was
    # told as `50%-off`, and the advised `track --ref` named another reference.
    headers = {
        "Reconciler-External-Reference": "50%25-off",
        "Reconciler-Submission-State": "uncertain",
    }
    reply = web.json_response({"error": "Server error"}, status=500, headers=headers)
    code, stderr = await submit_through(tmp_path, reply, reference="50%25-off")
    assert code == 75, stderr
    assert "external reference 50%25-off is uncertain" in stderr, stderr
    assert "--ref 50%25-off" in stderr and "50%-off" not in stderr


async def test_a_refusal_of_the_daemons_own_is_printed_masked(tmp_path: Path) -> None:
    body = {"error": f"bad body near {CCV_KEY}", "field": "order"}
    code, stderr = await submit_through(tmp_path, web.json_response(body, status=400))
    assert code == 65 and "refused the submit (HTTP 400)" in stderr, stderr
    assert CCV_KEY not in stderr


async def test_an_uncertain_submit_stored_with_outer_white_space_still_settles(
    tmp_path: Path,
) -> None:
    async with FakeCCVWrites() as fake:
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
        # An older release took the reference as given.
        await (await Store.open(tmp_path / "reconciler.db", sinks=["jsonl"])).close()
        with closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
            conn.execute(
                "INSERT INTO submissions (account, external_reference, state, reason, "
                "created_at, closed_at) VALUES ('default', 'old-1 ', 'uncertain', 'timeout', 1, 2)"
            )
        result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "old-1 ", "--not-sent")
    assert result.code == 0, result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("failed", "not_sent")]


async def test_a_lost_answer_through_the_daemon_is_said_in_reconcilers_words(
    tmp_path: Path,
) -> None:
    # Before, the daemon's `own` was not sent: the command printed "submit answered HTTP 504:"
    # and the daemon's JSON, a status CCV never gave.
    async with FakeCCVWrites() as fake:
        fake.submit_replies = [json_reply(201, {"orderId": "never-seen"}, delay_s=30)]
        port = free_port()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
        # The account's timeout short but above a loaded machine's connect: nothing races it,
        # the submit's answer never comes.
        cfg.write_text(cfg.read_text().replace('timeout = "2s"', 'timeout = "1s"', 1))
        async with daemon_here(cfg):
            await listening(port)
            stdin = json.dumps(submit_body(externalReference="lost-ü1")).encode()
            result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (75, ""), result.stderr
    assert "HTTP 504" not in result.stderr and "answered" not in result.stderr, result.stderr
    assert "reconciler: CCV gave no answer within 1 s (the account's timeout)\n" in result.stderr
    assert "external reference lost-ü1 is uncertain" in result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("uncertain", "timeout")]


class OwnAnswer:
    """A submitter answering every submit with reconciler's own answer `own` (a lost answer's)."""

    def __init__(self, own: str) -> None:
        self.own = own

    async def submit(self, account: str, document: object) -> Result:
        """Answer `own`, as a submit whose answer was lost does."""
        return json_result(502, {"error": "lost"}, "own-1", "uncertain", own=self.own)


async def test_the_daemons_own_answer_comes_back_masked_and_is_said_on_one_line(
    tmp_path: Path,
) -> None:
    # Before, the command printed the header's text decoded: `%0D%0A` became a line break.
    said = f"CCV's failure quoted {CCV_KEY}\r\nreconciler: error: forged second line"
    async with (
        FakeCCVWrites() as fake,
        serve_api(tmp_path, fake, submitter=cast("Submitter", OwnAnswer(said))) as api,
    ):
        # The daemon's runtime holds the store: the command goes through its API.
        _, _, headers = await api.call(
            "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="own-1")
        )
        header = headers[OWN_HEADER]
        stdin = json.dumps(submit_body(externalReference="own-1")).encode()
        result = await call_cli(
            "--config", api.daemon.config.file, "ccv", "submit", "-", stdin=stdin
        )
    assert CCV_KEY not in own_from_header(header) and "%0D%0A" in header, header
    assert (result.code, result.stdout) == (75, ""), result.stderr
    lines = result.stderr.splitlines()
    said_lines = [line for line in lines if "forged second line" in line]
    assert said_lines == [
        "reconciler: CCV's failure quoted *** reconciler: error: forged second line"
    ], result.stderr
    assert not any(line.startswith("reconciler: error:") for line in lines), result.stderr
    assert CCV_KEY not in result.stderr


@pytest.mark.parametrize("held", [False, True], ids=["local", "through-the-daemon"])
async def test_a_body_that_is_no_json_object_is_refused_before_anything_is_sent(
    tmp_path: Path, held: bool
) -> None:
    # Through the daemon it was POSTed, and refused as "the daemon's API refused the submit
    # (HTTP 400)"; without one, only after the store's writer lock was taken.
    posts: list[bytes] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        posts.append(await request.read())
        return web.json_response(
            {"error": "the body must be a JSON object", "field": "$"}, status=400
        )

    async with FakeCCVWrites() as fake:
        port = free_port()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
        app = web.Application()
        app.router.add_post("/api/v1/ccv/orders", answer)
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        lock = WriterLock(tmp_path / "reconciler.db")
        if held:
            lock.acquire()  # the daemon holds the store: the command would go through its API
        try:
            stdin = json.dumps([submit_body(externalReference="list-1")]).encode()
            result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        finally:
            if held:
                lock.release()
            await server.close()
    assert (result.code, result.stdout) == (65, ""), result.stderr
    assert result.stderr == "reconciler: error: $: the body must be a JSON object\n"
    assert posts == [] and fake.submits == []
    # Nor the store opened, nor made (held, the holder made it, as a daemon would have).
    assert (tmp_path / "reconciler.db").exists() == held
    assert not (tmp_path / "reconciler.db-wal").exists()
