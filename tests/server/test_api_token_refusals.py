"""A request whose bearer token is not the daemon's (an old one after a rotation) is told the
token is not valid, as RFC 6750 words it, not that one is required; refusals are logged at
warning, at most once a minute with how many were not logged since, never with the token, and
counted in a metric."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import free_port
from tests.fake_ccv_writes import FakeCCVWrites
from tests.server.test_api import TOKEN, Api, serve_api

OLD = "old-token-after-a-rotation-0123"


@pytest.fixture
async def api(tmp_path: object, fake: FakeCCVWrites) -> AsyncIterator[Api]:
    async with serve_api(tmp_path, fake) as api:  # type: ignore[arg-type]
        yield api


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.msg == "api.unauthorized"]


async def test_a_wrong_token_is_told_invalid_logged_at_warning_and_counted(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(3):
        status, body, headers = await api.call("GET", "/api/v1/events", token=OLD)
        assert (status, body) == (401, {"error": "the bearer token is not valid"})
        assert headers["WWW-Authenticate"] == 'Bearer realm="reconciler", error="invalid_token"'
    status, body, headers = await api.call("GET", "/api/v1/events", token=None)
    assert (status, body) == (401, {"error": "a bearer token is required"})
    assert headers["WWW-Authenticate"] == 'Bearer realm="reconciler"'
    assert (await api.call("GET", "/api/v1/events"))[0] == 200

    invalid, missing = refusal_lines(caplog)  # once a minute at most, for each reason
    assert invalid.levelno == missing.levelno == logging.WARNING
    assert invalid.fields == {  # type: ignore[attr-defined]
        "method": "GET",
        "reason": "invalid",
        "not_logged_before": 0,
    }
    assert missing.fields["reason"] == "missing"  # type: ignore[attr-defined]
    assert OLD not in caplog.text and TOKEN not in caplog.text
    text, _ = api.daemon.metrics.render()
    assert b'reconciler_api_unauthorized_total{reason="invalid"} 3.0' in text
    assert b'reconciler_api_unauthorized_total{reason="missing"} 1.0' in text


@asynccontextmanager
async def guarded_server(now: list[float]) -> AsyncIterator[Callable[[str | None], Awaitable[int]]]:
    """A server refusing requests without TOKEN, its clock `now[0]`; yields a call with a token
    (None: none) returning the status."""
    from reconciler.server.api_auth import TokenRefusals

    refusals = TokenRefusals(lambda: TOKEN, clock=lambda: now[0])

    async def guarded(request: web.Request) -> web.Response:
        return refusals.refusal(request) or web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", guarded)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:

            async def call(token: str | None) -> int:
                headers = {} if token is None else {"Authorization": f"Bearer {token}"}
                async with http.get(f"http://127.0.0.1:{port}/", headers=headers) as r:
                    return r.status

            yield call
    finally:
        await runner.cleanup()


async def test_refusals_are_logged_once_a_minute_with_those_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    now = [1000.0]
    async with guarded_server(now) as call:
        assert [await call(t) for t in (OLD, OLD, None, None, TOKEN)] == [401] * 4 + [200]
        now[0] += 59.9
        assert await call(OLD) == 401
        now[0] += 0.2
        assert [await call(t) for t in (None, OLD)] == [401, 401]
    said = [r.fields for r in refusal_lines(caplog)]  # type: ignore[attr-defined]
    assert said == [
        {"method": "GET", "reason": "invalid", "not_logged_before": 0},
        {"method": "GET", "reason": "missing", "not_logged_before": 0},
        {"method": "GET", "reason": "missing", "not_logged_before": 1},
        {"method": "GET", "reason": "invalid", "not_logged_before": 2},
    ]
    assert OLD not in caplog.text


async def test_a_flood_of_missing_tokens_hides_no_invalid_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A client without a token in a loop once kept the first request with an old token after a
    # rotation, another client's, out of the log for as long as the loop ran: one window for
    # both reasons.
    caplog.set_level(logging.INFO)
    now = [1000.0]
    async with guarded_server(now) as call:
        for _ in range(5):
            assert await call(None) == 401
            now[0] += 30.0
        assert await call(OLD) == 401
    lines = refusal_lines(caplog)
    said = [(r.fields["reason"], r.fields["not_logged_before"]) for r in lines]  # type: ignore[attr-defined]
    assert said == [("missing", 0), ("missing", 1), ("missing", 1), ("invalid", 0)]
