"""What a sink records from outside (a program's stderr, a receiver's answer) keeps no secret
of the config: not in the `sink.retry` line, not in the database. The real runtime, as the
daemon builds it from a config file, a real program and a real SQLite file."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.config import CommandSinkConfig, load_config
from reconciler.config.schema import LogSinkConfig
from reconciler.delivery import Delivery
from reconciler.events import Event
from reconciler.model import EventType
from reconciler.runtime import Runtime
from reconciler.sinks.base import Cutoff, DeliveryResult, OutboxEvent, RetryLater, SinkGone
from reconciler.sinks.command import CommandSink
from reconciler.store import Store

PASSWORD = "SUPERSECRETPW123"
WEBHOOK_SECRET = "whsec_GW08Egn45XjtupxtkQ4NQPz02I0xp/gj"
RECEIVER_SECRET = "RECVSECRETXYZ1234567"
SECRETS = (PASSWORD, WEBHOOK_SECRET, RECEIVER_SECRET)

# A hook that says what it was given: each secret on its last stderr line, the CCNow password
# form-encoded too (as a provider echoes what it was sent), and hex-encoded in either case.
TELLING = f"""
import sys
sys.stdin.read()
sys.stderr.write("first line {PASSWORD}\\n")
sys.stderr.write(
    "login failed for amylove with password {PASSWORD} (x_password=SUPERSECRETPW123%21),"
    " whsec {WEBHOOK_SECRET}, key {RECEIVER_SECRET.lower()},"
    " hex={PASSWORD.encode().hex()} HEX={RECEIVER_SECRET.encode().hex().upper()}\\n"
)
sys.exit(1)
"""


@pytest.fixture
async def echoing() -> AsyncIterator[TestServer]:
    """A webhook receiver that refuses every event, its answer quoting every secret."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=500, text=" ".join(SECRETS))

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def write_config(tmp_path: Path, hook_url: str) -> Path:
    script = tmp_path / "hook.py"
    script.write_text(TELLING)
    text = f"""
[store]
path = "{tmp_path / "r.db"}"
[ccnow]
url = "http://127.0.0.1:9/ccnow"
client_id = "amylove"
password = "{PASSWORD}"
[receiver]
listen = "127.0.0.1:1"
public_url = "http://127.0.0.1:1"
secret = "{RECEIVER_SECRET}"
[[sinks]]
type = "webhook"
name = "hook"
url = "{hook_url}"
secret = "{WEBHOOK_SECRET}"
[[sinks]]
type = "command"
name = "telling"
command = ["{sys.executable}", "{script}"]
timeout = "30s"
"""
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def leaks(text: str | bytes) -> list[str]:
    low = text.lower() if isinstance(text, str) else text.lower().decode("latin-1")
    return [
        s
        for s in SECRETS
        if s.lower() in low or s[:8].lower() in low or s.encode().hex()[:16] in low
    ]


async def test_no_secret_a_sink_hears_reaches_the_log_or_the_database(
    tmp_path: Path, echoing: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(write_config(tmp_path, str(echoing.make_url("/hook"))))
    data = {"source": "ccnow", "account": "default", "order_id": "396-10-1142"}
    event = Event(
        "e-1",
        EventType.STATUS_CHANGED,
        time.time(),
        "ccnow",
        "default",
        "396-10-1142",
        "info",
        data,
    )
    with caplog.at_level(logging.WARNING, logger="reconciler.outbox"):
        async with Runtime(config) as rt:
            async with rt.store.transaction():
                await rt.store.events.add([event])
            for sink in ("hook", "telling"):
                assert not await rt.delivery.drain(20.0, only=sink, retries=False)
    said = {
        r.__dict__["fields"]["sink"]: r.__dict__["fields"]["reason"]
        for r in caplog.records
        if r.message == "sink.retry"
    }
    # The program's own words are kept (they say why), each secret masked.
    assert said["telling"].startswith("exit 1: login failed for amylove with password ***")
    assert said["hook"] == "http 500"
    assert not leaks(said["telling"]), said
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("r.db*") if p.is_file())
    assert b"login failed for amylove" in stored  # the reason is there, masked
    assert not leaks(stored)


class SayingSink:
    """Refuses every event with a reason that quotes the receiver's answer, secrets and all; the
    second time, says the receiver is gone the same way."""

    name = "saying"

    def __init__(self) -> None:
        self.calls = 0

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        self.calls += 1
        said = f"answered: {PASSWORD} {WEBHOOK_SECRET}"
        if self.calls == 1:
            return [RetryLater(f"http 400 {said}")] * len(events)
        return [SinkGone(f"http 410 {said}")] * len(events)

    async def close(self) -> None:
        pass


async def test_the_dispatcher_masks_every_reason_a_sink_gives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Whatever the sink: the reason is masked where it is logged and recorded, not by each sink.
    store = await Store.open(tmp_path / "r.db", sinks=("saying",))
    clock = [1_000_000.0]
    delivery = Delivery(
        store,
        [(SayingSink(), LogSinkConfig(name="saying"))],
        clock=lambda: clock[0],
        secrets=[PASSWORD, WEBHOOK_SECRET],
    )
    data = {"source": "ccnow", "account": "default", "order_id": "396-10-1142"}
    event = Event(
        "e-1", EventType.STATUS_CHANGED, clock[0], "ccnow", "default", "396-10-1142", "info", data
    )
    try:
        async with store.transaction():
            await store.events.add([event])
        lane = delivery.lanes[0]
        with caplog.at_level(logging.WARNING, logger="reconciler.outbox"):
            await delivery._lane_once(lane, delivery._cutoffs["saying"])
            clock[0] += 3600
            await delivery._lane_once(lane, delivery._cutoffs["saying"])
        assert lane.disabled
    finally:
        await store.close()
    said = [(r.message, r.__dict__["fields"]["reason"]) for r in caplog.records]
    assert said == [
        ("sink.retry", "http 400 answered: *** ***"),
        ("sink.disabled", "http 410 answered: *** ***"),
    ]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("r.db*") if p.is_file())
    assert b"http 400 answered: *** ***" in stored or b"http 410 answered: *** ***" in stored
    assert not leaks(stored)


@pytest.mark.parametrize("before", [0, 150, 190, 197, 199])
async def test_a_program_s_line_is_masked_before_it_is_cut(tmp_path: Path, before: int) -> None:
    # Cut first, a line that reached the cut inside a secret kept its start, too short to be
    # told from a word; masked first, the cut takes a piece of the mask.
    script = tmp_path / "hook.py"
    line = "x" * before + PASSWORD + " end"
    script.write_text(f"import sys\nsys.stdin.read()\nsys.stderr.write({line!r})\nsys.exit(2)\n")
    sink = CommandSink(
        CommandSinkConfig(
            type="command", name="hook", command=(sys.executable, str(script)), timeout_s=30.0
        ),
        [PASSWORD],
    )
    body = b'{"id": "e-1"}'
    (result,) = await sink.deliver(
        [OutboxEvent(seq=1, id="e-1", type="t", order_id="o", body=body)]
    )
    assert isinstance(result, RetryLater)
    assert result.reason.startswith("exit 2: " + "x" * before + "*")
    assert "S" not in result.reason and len(result.reason) <= len("exit 2: ") + 200
