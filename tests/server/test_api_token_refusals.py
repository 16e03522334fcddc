"""A request whose bearer token is not the daemon's (an old one after a rotation) is told the
token is not valid, as RFC 6750 words it, not that one is required; refusals are logged at
warning, at most once a minute with how many were not logged since, never with the token, and
counted in a metric."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

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

    [line] = refusal_lines(caplog)  # once a minute at most
    assert line.levelno == logging.WARNING
    assert line.fields == {  # type: ignore[attr-defined]
        "method": "GET",
        "reason": "invalid",
        "not_logged_before": 0,
    }
    assert OLD not in caplog.text and TOKEN not in caplog.text
    text, _ = api.daemon.metrics.render()
    assert b'reconciler_api_unauthorized_total{reason="invalid"} 3.0' in text
    assert b'reconciler_api_unauthorized_total{reason="missing"} 1.0' in text


async def test_refusals_are_logged_once_a_minute_with_those_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Here: the module is new, and the test above is the one that says what was wrong.
    from reconciler.server.api_auth import TokenRefusals

    caplog.set_level(logging.INFO)
    now = [1000.0]
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

            assert [await call(t) for t in (OLD, OLD, None, TOKEN)] == [401, 401, 401, 200]
            now[0] += 59.9
            assert await call(OLD) == 401
            now[0] += 0.2
            assert await call(None) == 401
    finally:
        await runner.cleanup()
    said = [r.fields for r in refusal_lines(caplog)]  # type: ignore[attr-defined]
    assert said == [
        {"method": "GET", "reason": "invalid", "not_logged_before": 0},
        {"method": "GET", "reason": "missing", "not_logged_before": 3},
    ]
    assert OLD not in caplog.text
