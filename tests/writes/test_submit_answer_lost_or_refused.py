"""Review 29h: an answer that is no HTTP (a TLS alert from an https port set as `http://`) is
a lost answer a person may close, not one refused for ever; one aiohttp refused is never taken
for a lost one, also when its connector kept nothing of it; the advice of a lost answer agrees
with the refusal read with it; and what a write's answer brought is not kept on its idle
connection. Real fakes of CCV on 127.0.0.1, a real SQLite file, the real command line."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from reconciler.sources.http import Reply as Answered
from reconciler.store import Store
from reconciler.store.not_sent import not_sent
from reconciler.writes.once import HeadUnread, Uncertain, WriteAwareConnector, send_once
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import DROP, SUBMIT_PATH, FakeCCVWrites, submit_body
from tests.fake_providers import Raw, Reply
from tests.server.test_api import api_toml
from tests.writes.test_submit_crash import query
from tests.writes.test_submit_escaped_key_and_settled_answer import submitter

TIMEOUT = aiohttp.ClientTimeout(total=5)
# A TLS `handshake_failure` alert: what an https port answers a plain HTTP request with.
TLS_ALERT = Raw(raw=b"\x15\x03\x01\x00\x02\x02\x28")


async def post(session: aiohttp.ClientSession, fake: FakeCCVWrites) -> Answered:
    return await send_once(
        session,
        "POST",
        URL(fake.base_url + SUBMIT_PATH),
        headers=dict([fake._credential]),
        data=json.dumps(submit_body(externalReference="x-1")).encode(),
        timeout=TIMEOUT,
        gate=asyncio.Semaphore(1),
        max_body=1 << 20,
    )


async def test_a_submit_answered_with_no_http_is_closed_by_a_persons_word(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # It was `answer_head_unread`: `--not-sent` refused, and no order at CCV to track.
    fake.submit_replies = [TLS_ALERT]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="tls-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert "CCV's answer could not be read (malformed)" in submitted.stderr
    assert "--not-sent" in submitted.stderr, submitted.stderr
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "tls-1", "--not-sent")
    assert result.code == 0, result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("failed", "not_sent")]


async def test_an_answer_another_connector_kept_nothing_of_is_not_a_lost_one(
    fake: FakeCCVWrites,
) -> None:
    # aiohttp refused what came (no status line it reads): an answer began, though nothing of
    # it was kept to read again.
    fake.submit_replies = [Raw(raw=b"HTTP/1.1 2x1 Created\r\nLocation: /o/1\r\n\r\n")]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(HeadUnread):
            await post(session, fake)
    # A dropped connection is still a lost answer.
    fake.submit_replies = [Reply(DROP)]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(Uncertain) as lost:
            await post(session, fake)
    assert type(lost.value) is Uncertain


async def test_an_aiohttp_without_the_connectors_hook_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without it, no answer is kept: a 303 aiohttp refused would be closable as not sent.
    init = aiohttp.TCPConnector.__init__

    def renamed(self: aiohttp.TCPConnector, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        del self._factory

    monkeypatch.setattr(aiohttp.TCPConnector, "__init__", renamed)
    with pytest.raises(RuntimeError, match=f"aiohttp {aiohttp.__version__} is not supported"):
        WriteAwareConnector()


async def test_a_writes_answer_is_not_kept_on_an_idle_connection(fake: FakeCCVWrites) -> None:
    # A write's connection is its own, closed after its answer: no pool keeps it, nor the
    # 50 kB answer it brought.
    body = json.dumps({"orderId": "o-1", "pad": "p" * 50_000})
    fake.submit_replies = [Reply(201, body, "application/json")]
    connector = WriteAwareConnector()
    async with aiohttp.ClientSession(connector=connector) as session:
        assert (await post(session, fake)).status == 201
        pools = (connector, connector._writes)
        assert [proto for pool in pools for conns in pool._conns.values() for proto in conns] == []


def closed_meanwhile(db: Path, reference: str) -> Callable[[], None]:
    """An `on_commit` that, the first time it is told of a commit (the submit made uncertain),
    has a person's `--not-sent` close it, through a second connection in its own thread."""
    done: list[object] = []

    async def close() -> None:
        store = await Store.open(db)
        try:
            done.append(await not_sent(store, "default", reference, time.time()))
        finally:
            await store.close()

    def on_commit() -> None:
        if not done:
            thread = threading.Thread(target=asyncio.run, args=(close(),))
            thread.start()
            thread.join()
            assert done, "the word did not run"

    return on_commit


async def test_a_lost_answer_closed_meanwhile_advises_no_word_its_header_refuses(
    tmp_path: Path,
) -> None:
    # Another command's `--not-sent` closed it between its close and its answer: the answer
    # advised that word again (its body) while refusing it (its header).
    db = tmp_path / "r.db"
    async with FakeCCVWrites() as fake:
        fake.submit_replies = [Reply(DROP)]
        key = "t_fake-ccv-key-3f9a1c"
        async with submitter(db, fake, key, closed_meanwhile(db, "GONE-1")) as sub:
            result = await sub.submit("default", submit_body(externalReference="GONE-1"))
    assert (result.status, result.state) == (502, "failed")
    assert result.not_sent_refused is not None
    assert "--not-sent" not in json.loads(result.body).get("error", ""), result.body
