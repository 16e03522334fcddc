"""A compressed body is taken only when it decodes to its end: a gzip body cut short (`x`, the
bare 10-byte header, a stream without its trailer) is a 400 at the receiver and at the API,
as a body that is not gzip at all was; whole ones, also of several gzip members, decode."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from reconciler.config import Secret
from reconciler.metrics import Metrics
from reconciler.server import Receiver, build_app
from tests.server.conftest import CCNOW_TOKEN, RECEIVER, FakeHub, ccv_path
from tests.server.test_api import ORDER, Api

CCNOW_PATH = f"/notify/ccnow/default/{CCNOW_TOKEN}"
FORM = b"x_orderid_1=396-10-1142&x_status_1=completed"
WHOLE = gzip.compress(FORM)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CUT_SHORT = {
    "one byte": ("gzip", b"x"),
    "the bare gzip header": ("gzip", WHOLE[:10]),
    "gzip without its trailer": ("gzip", WHOLE[:-8]),
    "gzip cut mid-stream": ("gzip", WHOLE[: len(WHOLE) // 2]),
    "a second gzip member cut short": ("gzip", WHOLE + WHOLE[:12]),
    "zlib deflate without its checksum": ("deflate", zlib.compress(FORM)[:-4]),
    "raw deflate cut mid-stream": ("deflate", raw_deflate(FORM)[:-3]),
}

DECODED = {
    "gzip": ("gzip", WHOLE),
    "gzip in capitals": ("GZIP", WHOLE),
    "two gzip members": ("gzip", gzip.compress(FORM[:20]) + gzip.compress(FORM[20:])),
    "zlib deflate": ("deflate", zlib.compress(FORM)),
    "raw deflate": ("deflate", raw_deflate(FORM)),
    "no coding": ("identity", FORM),
    # A list names the codings in the order they were applied: the last is undone first.
    "gzip twice": ("gzip, gzip", gzip.compress(WHOLE)),
    "deflate then gzip": ("deflate,GZIP", gzip.compress(zlib.compress(FORM))),
    "gzip and identity": ("gzip, identity", WHOLE),
    "x-gzip": ("x-gzip", WHOLE),
}

# Read as plain bytes, these lost what the body said: a CCNow alert sent `gzip, gzip` was a 202
# with no order in it.
NOT_DECODED = {
    "gzip twice": ("gzip, gzip", WHOLE),
    "compress": ("compress", FORM),
    "an unknown coding": ("foo", FORM),
    "br": ("br", FORM),
    "gzip then an unknown one": ("gzip, foo", WHOLE),
    "five codings": (", ".join(["identity"] + ["gzip"] * 5), WHOLE),
    "gzip, empty": ("gzip", b""),
}


@pytest.fixture
async def receiver_url(hub: FakeHub, metrics: Metrics) -> AsyncIterator[str]:
    """The receiver served as the daemon serves it (the listener's own HTTP server)."""
    app = build_app(
        RECEIVER,
        hub,
        ccv_accounts=["default"],
        ccnow_tokens={"default": Secret(CCNOW_TOKEN)},
        metrics=metrics,
    )
    receiver = Receiver(app)
    try:
        port = await receiver.start("127.0.0.1", 0)
        yield f"http://127.0.0.1:{port}"
    finally:
        await receiver.close()


async def post(url: str, coding: str, body: bytes) -> int:
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Encoding": coding, "Content-Type": "application/x-www-form-urlencoded"}
        async with http.post(url, data=body, headers=headers) as response:
            return response.status


@pytest.mark.parametrize("case", list(CUT_SHORT))
@pytest.mark.parametrize("path", [ccv_path(order_id="O-1"), CCNOW_PATH])
async def test_a_body_cut_short_is_a_400_and_checks_nothing(
    receiver_url: str, hub: FakeHub, path: str, case: str
) -> None:
    coding, body = CUT_SHORT[case]
    assert await post(receiver_url + path, coding, body) == 400
    # A valid notification after it is taken: the refusal was the body's alone.
    assert await post(receiver_url + path, "gzip", WHOLE) == 202
    await hub.wait_calls(1)
    assert len(hub.calls) == 1


@pytest.mark.parametrize("case", list(DECODED))
async def test_a_whole_body_is_decoded(receiver_url: str, hub: FakeHub, case: str) -> None:
    coding, body = DECODED[case]
    assert await post(receiver_url + CCNOW_PATH, coding, body) == 202
    await hub.wait_calls(1)
    assert hub.calls[0][:3] == ("ccnow", "default", ["396-10-1142"])


@pytest.mark.parametrize("case", list(NOT_DECODED))
async def test_a_body_in_a_coding_not_decoded_is_a_400(
    receiver_url: str, hub: FakeHub, case: str
) -> None:
    coding, body = NOT_DECODED[case]
    assert await post(receiver_url + CCNOW_PATH, coding, body) == 400
    assert hub.calls == []


async def test_a_body_that_inflates_past_the_limit_is_a_413(
    receiver_url: str, hub: FakeHub
) -> None:
    bomb = gzip.compress(b"0" * (RECEIVER.max_body_bytes + 1))
    assert await post(receiver_url + CCNOW_PATH, "gzip", bomb) == 413
    exact = gzip.compress(b"396-10-1142 " + b"0" * (RECEIVER.max_body_bytes - 12))
    assert await post(receiver_url + CCNOW_PATH, "gzip", exact) == 202
    await hub.wait_calls(1)


@pytest.mark.parametrize("path", ["/", "/healthz", ccv_path(order_id="O-1") + "x"])
async def test_a_body_cut_short_is_a_400_wherever_it_is_sent(
    receiver_url: str, hub: FakeHub, path: str
) -> None:
    assert await post(receiver_url + path, "gzip", WHOLE[:10]) == 400
    assert hub.calls == []


async def test_the_api_refuses_a_json_body_cut_short(api: Api) -> None:
    track = b'{"source": "ccv", "order_id": "' + ORDER.encode() + b'"}'
    headers = {"Content-Encoding": "gzip"}
    cut = gzip.compress(track)[:-8]  # the whole JSON is in it; the gzip trailer is not
    status, document, _ = await api.call("POST", "/api/v1/orders", raw=cut, headers=headers)
    assert (status, document) == (400, {"error": "the body could not be read", "field": "$"})
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]
    whole = gzip.compress(track)
    status, document, _ = await api.call("POST", "/api/v1/orders", raw=whole, headers=headers)
    assert (status, document["order_id"]) == (201, ORDER)


@pytest.mark.parametrize("case", list(NOT_DECODED))
async def test_the_api_refuses_a_body_in_a_coding_not_decoded(api: Api, case: str) -> None:
    coding, body = NOT_DECODED[case]
    track = b'{"source": "ccv", "order_id": "' + ORDER.encode() + b'"}'
    raw = body.replace(FORM, track) if body != WHOLE else gzip.compress(track)
    headers = {"Content-Encoding": coding}
    status, document, _ = await api.call("POST", "/api/v1/orders", raw=raw, headers=headers)
    assert (status, document) == (400, {"error": "the body could not be read", "field": "$"})
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]
