"""A loopback fake of CCV's two write calls (submit an order, set its prices), on top of the
status endpoint of FakeCCV, so that a submitted order can then be checked like any other."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fake_providers import FakeCCV, Raw, Reply, raw_answer

SUBMIT_PATH = "/api/ordercompletion/reseller/order"
PRICING_PATH = "/api/ordercompletion/reseller/orderconfigurator/SetShoppingCardPricingDetails"
DROP = -1  # a Reply status that makes the fake drop the connection instead of answering


@dataclass(frozen=True)
class BodyBreaks(Reply):
    """An answer whose status line and headers come, with a Content-Length past `body`, and
    whose body stops after `body`: the connection closed, or (`stall`) held open until the
    fake closes (the client's timeout runs out first). `chunked`: sent as one chunk with no
    last chunk after it (no Content-Length), the body whole but its framing broken."""

    stall: bool = False


class FakeCCVWrites(FakeCCV):
    """FakeCCV plus submit and pricing. Submits answer `submit_replies` one per request, else
    201 `{"orderId": ...}` with the order created as `Processing`; `submit_hold` holds every
    submit until set. `submits` and `pricing_calls` record the bodies received."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.submits: list[dict[str, Any]] = []
        self.submit_replies: list[Reply] = []
        self.submit_hold: asyncio.Event | None = None
        self.pricing_calls: list[dict[str, Any]] = []
        self.pricing_replies: list[Reply] = []

    def routes(self) -> list[web.RouteDef]:
        """Return the status, submit and pricing routes."""
        return [
            *super().routes(),
            web.post(SUBMIT_PATH, self._submit),
            web.patch(PRICING_PATH, self._pricing),
        ]

    def _authorized(self, request: web.Request) -> bool:
        header, value = self._credential
        return request.headers.get(header) == value

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        body = await request.json()
        self.submits.append(body)
        await self._notify()
        if self.submit_hold is not None:
            await self.submit_hold.wait()
        if self.submit_replies:
            return await self._reply(request, self.submit_replies.pop(0))
        order_id = str(uuid.uuid4())
        self.orders[order_id] = "Processing"
        self.refs[order_id] = body["externalReference"]
        return web.json_response({"orderId": order_id}, status=201)

    async def _pricing(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        self.pricing_calls.append(await request.json())
        await self._notify()
        if self.pricing_replies:
            return await self._reply(request, self.pricing_replies.pop(0))
        return web.json_response({"message": "Shopping cart pricing details set"})

    async def _reply(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        await self._pause(reply.delay_s)
        if reply.status == DROP:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if isinstance(reply, Raw):
            return raw_answer(request, reply)
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        if isinstance(reply, BodyBreaks):
            return await self._broken(request, reply, body)
        return web.Response(
            status=reply.status,
            body=body,
            content_type=reply.content_type,
            headers=dict(reply.headers),
        )

    async def _broken(
        self, request: web.Request, reply: BodyBreaks, body: bytes
    ) -> web.StreamResponse:
        headers = {"Content-Type": reply.content_type, **reply.headers}
        if not reply.chunked:
            headers["Content-Length"] = str(len(body) + 86)
        response = web.StreamResponse(status=reply.status, headers=headers)
        if reply.chunked:
            response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(body)
        if reply.stall:
            await self._pause(3600)
        assert request.transport is not None
        request.transport.close()
        return response


def submit_body(**changes: Any) -> dict[str, Any]:
    """Return a submit-order body like CCV's example, without a notification URL."""
    body: dict[str, Any] = {"notifyCustomerByEmail": True, "order": {"orderNotes": None}}
    body.update(changes)
    return body


def json_reply(status: int, document: object, delay_s: float = 0.0) -> Reply:
    """Return a scripted JSON answer."""
    return Reply(status, json.dumps(document), "application/json", delay_s=delay_s)
