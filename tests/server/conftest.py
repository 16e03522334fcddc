"""The receiver's test set-up: a fake hub that records what the receiver asks of the daemon,
an injectable clock, the receiver app on 127.0.0.1, and helpers to send raw paths to it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from reconciler.config import ReceiverConfig, Secret
from reconciler.metrics import Metrics
from reconciler.notify import notification_url
from reconciler.server import DEBOUNCER, Health, build_app
from tests.conftest import Clock

RECEIVER_SECRET = "receiver-secret-0123456789abcdef"
CCNOW_TOKEN = "ccnow-token-ABCDEFGH12345678"
RECEIVER = ReceiverConfig(
    listen_host="127.0.0.1",
    listen_port=0,
    public_url="https://integrator.example/reconciler",
    secret=Secret(RECEIVER_SECRET),
    debounce_s=0.05,
)

if TYPE_CHECKING:
    Client = TestClient[web.Request, web.Application]
else:  # TestClient is generic only in newer aiohttp
    Client = TestClient


class FakeHub:
    """Records what the receiver asks for; `gate`, when set, holds every check until opened."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.recorded: list[tuple[str, ...]] = []  # CCV notifications kept before their 202
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None
        self.record_fails_with: Exception | None = None  # raised by the records before a 202
        self.record_gate: asyncio.Event | None = None  # when set, holds the records until opened
        self.health_value = Health(sources=())
        self.refreshed = 0
        self.refresh_fails_with: Exception | None = None
        self._changed = asyncio.Condition()

    async def wait_calls(self, count: int, timeout_s: float = 3.0) -> None:
        """Wait, bounded, until the hub has been asked `count` times."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.calls) >= count), timeout_s
            )

    async def _record(self, *call: Any) -> None:
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with

    async def record_ccv_order(self, account: str, order_id: str) -> bool:
        self.recorded.append(("order", account, order_id))
        if self.record_gate is not None:
            await self.record_gate.wait()
        if self.record_fails_with is not None:
            raise self.record_fails_with
        return True

    async def record_ccv_reference(self, account: str, reference: str) -> bool:
        self.recorded.append(("ref", account, reference))
        if self.record_fails_with is not None:
            raise self.record_fails_with
        return True

    async def check_ccv_order(
        self, account: str, order_id: str, received_at: float, *, recorded: bool = False
    ) -> None:
        await self._record("order", account, order_id, received_at)

    async def check_ccv_reference(
        self, account: str, reference: str, received_at: float, *, recorded: bool = False
    ) -> None:
        await self._record("ref", account, reference, received_at)

    async def poll_ccnow(
        self,
        account: str,
        order_ids: Sequence[str],
        received_at: float,
        mentioned: Sequence[str] = (),
    ) -> None:
        await self._record("ccnow", account, list(order_ids), received_at, list(mentioned))

    async def health(self) -> Health:
        return self.health_value

    async def refresh_metrics(self) -> None:
        self.refreshed += 1
        if self.refresh_fails_with is not None:
            raise self.refresh_fails_with


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
async def client(hub: FakeHub, metrics: Metrics, clock: Clock) -> AsyncIterator[Client]:
    app = build_app(
        RECEIVER,
        hub,
        ccv_accounts=["default", "second"],
        ccnow_tokens={"default": Secret(CCNOW_TOKEN)},
        metrics=metrics,
        clock=clock,
    )
    async with TestClient(served(app)) as test_client:
        yield test_client


def served(app: web.Application) -> TestServer:
    """The app on 127.0.0.1, its bodies left undecoded as the listeners leave them
    (connections.BoundedRunner): the app decodes them itself."""
    return TestServer(app, host="127.0.0.1", auto_decompress=False)


def ccv_path(*, order_id: str | None = None, reference: str | None = None) -> str:
    """The path part of a signed CCV URL, as the proxy in front of us passes it on."""
    url = notification_url(RECEIVER, "default", order_id=order_id, reference=reference)
    return urlsplit(url).path


async def send(
    client: Client, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """Send `path` byte for byte (no client-side normalisation) and return status and JSON."""
    url = URL(f"http://127.0.0.1:{client.port}{path}", encoded=True)
    async with client.session.request(method, url, **kwargs) as response:
        body = await response.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = body
        return response.status, data, response


async def settled(client: Client) -> None:
    """Wait until every background check the receiver started has finished."""
    await client.app[DEBOUNCER].join()
