"""The integration API served for real on 127.0.0.1, against a fake CCV: auth, bad input,
orders, the events feed, CCV submit and the pricing pass-through."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.config import ConfigError, load_config
from reconciler.daemon import Daemon
from reconciler.events import submit_uncertain_event
from reconciler.model import EventType, OrderKey, known_statuses
from reconciler.notify import notification_url
from reconciler.runtime import Runtime
from reconciler.server.api import API_LIMITS
from reconciler.server.api_orders import Orders
from reconciler.server.connections import ConnectionLimits
from reconciler.sources.http import Gates
from reconciler.systemd import Notifier
from reconciler.writes.submit import Submitter
from tests.conftest import free_port, write_config
from tests.fake_ccv_writes import DROP, FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow, Reply

TOKEN = "api-token-0123456789abcdef"
RECEIVER_SECRET = "receiver-secret-0123456789abcdef"
PUBLIC_URL = "https://integrator.example/reconciler"
ORDER = "0b7c2a4e-8f0b-4d57-9a8e-2c1d3b5e7a90"


def api_toml(port: int, *, extra: str = "", receiver_port: int | None = None) -> str:
    """The [receiver] and [api] tables of a test config."""
    receiver_port = receiver_port or free_port()
    return (
        f'[receiver]\nlisten = "127.0.0.1:{receiver_port}"\npublic_url = "{PUBLIC_URL}"\n'
        f'secret = "{RECEIVER_SECRET}"\n\n'
        f'[api]\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\nrefresh_timeout = "1s"\n'
        f"{'' if 'max_body' in extra else 'max_body = 4096'}\n{extra}\n"
    )


@dataclass
class Api:
    """A daemon's API listening on loopback, and a client for it."""

    url: str
    daemon: Daemon
    rt: Runtime
    http: aiohttp.ClientSession
    db: Path

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = TOKEN,
        body: object = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        """Send one request; return status, decoded JSON body (or None) and headers."""
        send = dict(headers or {})
        if token is not None:
            send.setdefault("Authorization", f"Bearer {token}")
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if data is not None:
            send.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.url + path, data=data, headers=send) as resp:
            text = await resp.read()
            document = json.loads(text) if text else None
            return resp.status, document, resp.headers

    def submission(self, reference: str) -> tuple[Any, ...] | None:
        """Return (state, order_id) of the latest submission of a reference."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return conn.execute(  # type: ignore[no-any-return]
                "SELECT state, order_id FROM submissions WHERE external_reference = ? "
                "ORDER BY id DESC",
                (reference,),
            ).fetchone()

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Run a query on the database file."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn, conn:
            return conn.execute(sql, params).fetchall()


@contextlib.asynccontextmanager
async def serve_api(
    tmp_path: Path,
    fake: FakeCCVWrites,
    *,
    ccv_timeout: str = "2s",
    api_extra: str = "",
    limits: ConnectionLimits = API_LIMITS,
    ccnow: FakeCCNow | None = None,
    gates: Gates | None = None,
    submitter: Submitter | None = None,
    ccv_key: str = CCV_KEY,
    edit_config: Callable[[str], str] = lambda text: text,
) -> AsyncIterator[Api]:
    """Run the daemon's API (no scheduler) on a free port for the block, with the connection
    bounds `limits` (and a CCNow account when `ccnow` is given; the accounts' bounds `gates`
    when given, for a test to hold and watch; the CCV submits' `submitter` when given; the CCV
    account's API key `ccv_key`; the config's text as `edit_config` makes it)."""
    port = free_port()
    cfg = write_config(
        tmp_path,
        ccv=fake,
        ccnow=ccnow,
        ccv_extra=f'api_key = "{ccv_key}"',
        ccnow_extra=f'password = "{CCNOW_PASSWORD}"',
        extra=api_toml(port, extra=api_extra),
    )
    # The fakes' config has one timeout for every provider; the CCV one is changed here.
    cfg.write_text(
        edit_config(cfg.read_text().replace('timeout = "2s"', f'timeout = "{ccv_timeout}"', 1))
    )
    config = load_config(cfg)
    runtime = Runtime(config)
    if gates is not None:
        runtime.gates = gates  # before the runtime opens: all its parts share them
    async with runtime as rt:
        delivering = asyncio.ensure_future(rt.delivery.run())
        daemon = Daemon(config, rt, Notifier(None), api_limits=limits, submitter=submitter)
        await daemon.start_api()
        try:
            async with aiohttp.ClientSession() as http:
                yield Api(f"http://127.0.0.1:{port}", daemon, rt, http, config.store_path)
        finally:
            assert daemon.api is not None and daemon.api_reader is not None
            await daemon.api.close()
            await daemon.api_reader.close()
            rt.delivery.stop()
            await delivering


@pytest.fixture
async def api(tmp_path: Path, fake: FakeCCVWrites) -> AsyncIterator[Api]:
    """The API of a daemon whose CCV account times out after 0.5 s."""
    async with serve_api(tmp_path, fake, ccv_timeout="500ms") as api:
        yield api


# --- auth ---------------------------------------------------------------------------------------

ENDPOINTS = [
    ("POST", "/api/v1/orders", {"source": "ccv", "order_id": ORDER}),
    ("GET", f"/api/v1/orders/ccv/{ORDER}?refresh=1", None),
    ("DELETE", f"/api/v1/orders/ccv/{ORDER}", None),
    ("GET", "/api/v1/events", None),
    ("POST", "/api/v1/ccv/orders", submit_body()),
    ("PATCH", "/api/v1/ccv/pricing", {"currency": "EUR"}),
    ("GET", "/api/v1/ccv/submissions/shop-1", None),
    ("GET", "/api/v1/nothing-here", None),
]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer é"],
)
async def test_without_the_token_nothing_is_read_written_or_sent(
    api: Api, fake: FakeCCVWrites, authorization: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.rows("INSERT INTO orders (source, account, order_id) VALUES ('ccv', 'default', ?)", ORDER)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in ENDPOINTS:
        status, document, response_headers = await api.call(
            method, path, token=None, body=body, headers=headers
        )
        assert status == 401, (method, path)
        # A bearer token that is not the daemon's is told so (RFC 6750's invalid_token).
        invalid = (authorization or "").startswith("Bearer ")
        said = "the bearer token is not valid" if invalid else "a bearer token is required"
        assert document == {"error": said}
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert fake.requests == [] and fake.submits == [] and fake.pricing_calls == []
    assert api.rows("SELECT order_id, status FROM orders") == [(ORDER, None)]
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]
    assert TOKEN not in caplog.text


async def test_the_token_comes_from_env_or_a_systemd_credential(
    tmp_path: Path, fake: FakeCCVWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    base = write_config(tmp_path, ccv=fake)
    table = f'\n[api]\nlisten = "127.0.0.1:{free_port()}"\n'
    base.write_text(base.read_text() + table)
    monkeypatch.setenv("RECONCILER_API_TOKEN", TOKEN)
    config = load_config(base)
    assert config.api is not None and config.api.token.reveal() == TOKEN
    assert (config.api.listen_host, config.api.max_body_bytes) == ("127.0.0.1", 1024 * 1024)
    monkeypatch.delenv("RECONCILER_API_TOKEN")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api-token").write_text("from-credential-0123456789\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(base)
    assert config.api is not None and config.api.token.reveal() == "from-credential-0123456789"


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ('[api]\nlisten = "127.0.0.1:8081"\n', "api.token", "required"),
        ('[api]\ntoken = "short"\n', "api.token", "at least 16 characters"),
        # The header's value is trimmed (and sent as latin-1 or ASCII): no request could
        # carry such a token, though `check` passed it.
        ('[api]\ntoken = " shortshortshort1"\n', "api.token", "white space"),
        ('[api]\ntoken = "shortshortshort1 "\n', "api.token", "white space"),
        ('[api]\ntoken = "shortshortshort\u00e9"\n', "api.token", "must be ASCII"),
        (f'[api]\ntoken = "{TOKEN}"\nlisten = "8081"\n', "api.listen", "host:port"),
        (f'[api]\ntoken = "{TOKEN}"\nccv_order_id_fields = []\n', "api.ccv_order_id_fields", ""),
        (f'[api]\ntoken = "{TOKEN}"\nlisen = "x"\n', "api.lisen", "unknown key"),
    ],
)
def test_api_config_errors_name_the_key(
    tmp_path: Path, fake: FakeCCVWrites, table: str, key: str, problem: str
) -> None:
    cfg = write_config(tmp_path, ccv=fake, ccv_extra=f'api_key = "{CCV_KEY}"', extra=table)
    with pytest.raises(ConfigError) as error:
        load_config(cfg)
    assert f": {key}: " in str(error.value) and problem in str(error.value)
    assert "short" not in str(error.value)  # a secret's problem never shows the value


def test_an_api_token_file_ending_in_a_space_is_a_config_error(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    (tmp_path / "api-token").write_text("shortshortshort1 \n")
    table = '[api]\ntoken_file = "api-token"\n'
    cfg = write_config(tmp_path, ccv=fake, ccv_extra=f'api_key = "{CCV_KEY}"', extra=table)
    with pytest.raises(ConfigError) as error:
        load_config(cfg)
    assert ": api.token_file: must not begin or end with white space" in str(error.value)
    assert "short" not in str(error.value)


# --- bad input ----------------------------------------------------------------------------------

BAD_INPUT = [
    # (method, path, raw body, status, field)
    ("POST", "/api/v1/orders", b"{not json", 400, "$"),
    ("POST", "/api/v1/orders", b"[1, 2]", 400, "$"),
    ("POST", "/api/v1/orders", b'{"source": "paypal", "order_id": "x"}', 422, "source"),
    ("POST", "/api/v1/orders", b'{"source": 7, "order_id": "x"}', 422, "source"),
    ("POST", "/api/v1/orders", b'{"source": "ccv", "order_id": 12}', 422, "order_id"),
    ("POST", "/api/v1/orders", b'{"source": "ccv", "order_id": "a/../b"}', 422, "order_id"),
    ("POST", "/api/v1/orders", b'{"source": "ccv", "order_id": ""}', 422, "order_id"),
    ("POST", "/api/v1/orders", b'{"source": "ccnow", "order_id": "12-34"}', 422, "order_id"),
    ("POST", "/api/v1/orders", b'{"source": "ccv", "order_id": "a", "x": 1}', 422, "x"),
    (
        "POST",
        "/api/v1/orders",
        b'{"source": "ccv", "order_id": "a", "account": "b"}',
        422,
        "account",
    ),
    (
        "POST",
        "/api/v1/orders",
        b'{"source": "ccv", "order_id": "a", "external_reference": 5}',
        422,
        "external_reference",
    ),
    (
        "POST",
        "/api/v1/orders",
        rb'{"source": "ccv", "order_id": "a", "external_reference": "\ud800"}',
        400,
        "$",
    ),
    (
        "POST",
        "/api/v1/orders",
        b'{"source": "ccv", "order_id": "a", "external_reference": "INV\\n1"}',
        422,
        "external_reference",
    ),
    ("POST", "/api/v1/orders", b'{"a": "' + b"x" * 5000 + b'"}', 413, "$"),
    ("POST", "/api/v1/orders", b'{"a": "\xff\xfe"}', 400, "$"),
    ("POST", "/api/v1/orders", b"[" * 100_000, 413, "$"),
    ("GET", "/api/v1/orders/paypal/abc", None, 422, "source"),
    ("GET", "/api/v1/orders/ccv/a%2F..%2Fb", None, 422, "order_id"),
    ("GET", "/api/v1/orders/ccnow/12345", None, 422, "order_id"),
    ("GET", f"/api/v1/orders/ccv/{ORDER}", None, 404, "order_id"),
    ("GET", f"/api/v1/orders/ccv/{ORDER}?refresh=yes", None, 400, "refresh"),
    ("GET", f"/api/v1/orders/ccv/{ORDER}?account=nope", None, 422, "account"),
    ("DELETE", "/api/v1/orders/ccv/%00", None, 422, "order_id"),
    # A path segment of its own: clients drop it from the notification URL, CCV's calls 404.
    (
        "POST",
        "/api/v1/orders",
        b'{"source": "ccv", "order_id": "a", "external_reference": ".."}',
        422,
        "external_reference",
    ),
    # No submit is made with white space alone, and no notification URL can carry it.
    (
        "POST",
        "/api/v1/orders",
        b'{"source": "ccv", "order_id": "a", "external_reference": " "}',
        422,
        "external_reference",
    ),
    ("GET", "/api/v1/events?after=abc", None, 400, "after"),
    ("GET", "/api/v1/events?after=-1", None, 400, "after"),
    # All digits, too many for the feed's seqs (or SQLite's integers): beyond it, not malformed.
    ("GET", "/api/v1/events?after=99999999999999999999", None, 409, "after"),
    ("GET", "/api/v1/events?after=9223372036854775807", None, 409, "after"),
    ("GET", "/api/v1/events?after=9223372036854775808", None, 409, "after"),
    ("GET", "/api/v1/events?after=" + "9" * 5000, None, 409, "after"),
    ("GET", "/api/v1/events?after=%EF%BC%91", None, 400, "after"),
    ("GET", "/api/v1/events?after=999999", None, 409, "after"),
    ("GET", "/api/v1/events?after=0b7c2a4e-0000-5000-8000-000000000000", None, 404, "after"),
    ("GET", "/api/v1/events?type=order.bogus", None, 400, "type"),
    ("GET", "/api/v1/events?limit=0", None, 400, "limit"),
    ("GET", "/api/v1/events?limit=5000", None, 400, "limit"),
    ("GET", "/api/v1/events?limit=%D9%A3", None, 400, "limit"),
    ("POST", "/api/v1/ccv/orders", b"nope", 400, "$"),
    ("POST", "/api/v1/ccv/orders", b'"a string"', 400, "$"),
    ("POST", "/api/v1/ccv/orders", b'{"order": {}}', 422, "notifyCustomerByEmail"),
    # json.loads takes these, JSON does not; nothing may be recorded or sent for them
    ("POST", "/api/v1/ccv/orders", b'{"notifyCustomerByEmail": true, "order": NaN}', 400, "$"),
    (
        "POST",
        "/api/v1/ccv/orders",
        b'{"notifyCustomerByEmail": true, "order": {"notes": [Infinity]}}',
        400,
        "$",
    ),
    (
        "POST",
        "/api/v1/ccv/orders",
        rb'{"notifyCustomerByEmail": true, "order": {"orderNotes": "\udc80 half"}}',
        400,
        "$",
    ),
    ("PATCH", "/api/v1/ccv/pricing", rb'{"currency": "EUR", "order": {"x": "\ud83d"}}', 400, "$"),
    ("POST", "/api/v1/ccv/orders", b'{"notifyCustomerByEmail": true}', 422, "order"),
    (
        "POST",
        "/api/v1/ccv/orders",
        b'{"notifyCustomerByEmail": true, "order": {}, "externalReference": 42}',
        422,
        "externalReference",
    ),
    (
        "POST",
        "/api/v1/ccv/orders",
        b'{"notifyCustomerByEmail": true, "order": {}, "statusNotificationInformation": '
        b'{"notificationUrl": "https://elsewhere.example/hook"}}',
        422,
        "statusNotificationInformation.notificationUrl",
    ),
    (
        "POST",
        "/api/v1/ccv/orders",
        b'{"notifyCustomerByEmail": true, "order": {}, "statusNotificationInformation": '
        b'{"notifyOnStatus": ["Completed", "Done"]}}',
        422,
        "statusNotificationInformation.notifyOnStatus[1]",
    ),
    (
        "POST",
        "/api/v1/ccv/orders",
        b'{"notifyCustomerByEmail": true, "order": {}, "statusNotificationInformation": []}',
        422,
        "statusNotificationInformation",
    ),
    ("POST", "/api/v1/ccv/orders?account=other", b"{}", 422, "account"),
    ("GET", "/api/v1/ccv/submissions/unknown-ref", None, 404, "reference"),
    ("GET", "/api/v1/ccv/submissions/" + "r" * 257, None, 422, "reference"),
    ("PATCH", "/api/v1/ccv/pricing", b"{", 400, "$"),
    ("PATCH", "/api/v1/ccv/pricing?account=other", b"{}", 422, "account"),
    # No CCNow account: every CCNow request is the same 422 naming `source` (the actions' was a
    # 404 naming no field).
    ("POST", "/api/v1/orders", b'{"source": "ccnow", "order_id": "396-10-1142"}', 422, "source"),
    ("GET", "/api/v1/orders/ccnow/396-10-1142", None, 422, "source"),
    (
        "POST",
        "/api/v1/ccnow/actions",
        b'{"order_id": "396-10-1142", "action": "ship"}',
        422,
        "source",
    ),
    ("GET", "/api/v1/ccnow/actions/7", None, 422, "source"),
    (
        "POST",
        "/api/v1/ccnow/actions/resolve",
        b'{"order_id": "396-10-1142", "sent": true}',
        422,
        "source",
    ),
]


@pytest.mark.parametrize(("method", "path", "raw", "status", "field"), BAD_INPUT)
async def test_bad_input_gets_a_4xx_naming_the_field_and_costs_nothing(
    api: Api,
    fake: FakeCCVWrites,
    method: str,
    path: str,
    raw: bytes | None,
    status: int,
    field: str,
) -> None:
    got, document, _ = await api.call(method, path, raw=raw)
    assert (got, document.get("field")) == (status, field), document
    assert isinstance(document["error"], str) and document["error"]
    assert fake.requests == [] and fake.submits == [] and fake.pricing_calls == []
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]


async def test_unknown_paths_and_methods_answer_json(api: Api) -> None:
    status, document, _ = await api.call("GET", "/api/v1/nothing")
    assert (status, document) == (404, {"error": "not found"})
    status, document, headers = await api.call("PUT", "/api/v1/events")
    assert status == 405 and document == {"error": "method not allowed"}
    assert "GET" in headers["Allow"]


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)


# Also what Python's json takes and JSON does not (a lone surrogate escape, NaN), and numbers
# beyond any exact decimal arithmetic.
_ODD = st.sampled_from(["\ud800", "x\udc80", float("nan"), 10**30, -1e300])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | _ODD,
    _containers,
    max_leaves=12,
)
_KEYS = st.sampled_from(
    [
        "source",
        "order_id",
        "account",
        "external_reference",
        "notifyCustomerByEmail",
        "order",
        "externalReference",
        "statusNotificationInformation",
        "currency",
        "periodPricingDetails",
    ]
)
_BODIES = st.one_of(
    st.binary(max_size=64),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(_KEYS, _JSON, max_size=5).map(lambda v: json.dumps(v).encode()),
)
_SEGMENT = st.one_of(
    st.sampled_from(["ccv", "ccnow", "orders", "events", "pricing", ORDER, "396-10-1142", ""]),
    st.text(max_size=12).map(lambda t: quote(t, safe="")),
)
_PATHS = st.one_of(
    st.sampled_from(
        ["/api/v1/orders", "/api/v1/events", "/api/v1/ccv/orders", "/api/v1/ccv/pricing"]
    ),
    st.lists(_SEGMENT, min_size=1, max_size=3).map(lambda s: "/api/v1/orders/" + "/".join(s)),
)
_QUERIES = st.dictionaries(
    st.sampled_from(["after", "limit", "type", "refresh", "account"]),
    st.text(max_size=8),
    max_size=3,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PATCH", "PUT"]),
    path=_PATHS,
    query=_QUERIES,
    body=_BODIES,
)
async def test_no_input_gets_a_500(
    api: Api, method: str, path: str, query: dict[str, str], body: bytes
) -> None:
    target = path + ("?" + urlencode(query) if query else "")
    status, document, _ = await api.call(method, target, raw=body)
    assert status < 500 or (path == "/api/v1/ccv/orders" and status in (502, 504)), (
        status,
        document,
    )
    assert document is None or "error" in document or status < 300


# --- connections: the receiver's bounds -------------------------------------------------------


def api_port(api: Api) -> int:
    return int(api.url.rsplit(":", 1)[1])


async def raw_answer(port: int, request: bytes) -> bytes:
    """Send raw bytes on a new connection; return everything until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("token", [TOKEN, None])
async def test_a_body_that_does_not_decode_gets_a_4xx_and_no_traceback(
    api: Api, caplog: pytest.LogCaptureFixture, encoding: str, token: str | None
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    body = b"garbage" * 9
    for _ in range(5):
        for path in ("/api/v1/orders", "/api/v1/ccv/orders", "/api/v1/nothing"):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
                f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            answer = await raw_answer(api_port(api), head.encode() + body)
            status = int(answer.split(b" ", 2)[1])
            assert 400 <= status < 500, answer[:200]
    # Beside a refusal for the token, warned of once a minute (test_api_token_refusals.py).
    warned = [r.msg for r in caplog.records if r.levelno >= logging.WARNING]
    assert set(warned) <= {"api.unauthorized"} and len(warned) == (0 if token else 1), warned
    assert not any(r.exc_info for r in caplog.records)
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nX-Secret\x01: sk_live_leak\r\n\r\n",
        b"GET /sk_live_leak\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/v1/orders HTTP/1.1\r\nContent-Length: sk_live_leak\r\n\r\n",
    ],
)
async def test_a_malformed_request_gets_a_fixed_400_page(api: Api, request_bytes: bytes) -> None:
    answer = await raw_answer(api_port(api), request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"400", answer[:200]
    assert body == b'{"error": "bad request"}'
    assert b"sk_live_leak" not in answer


async def test_no_answer_names_the_server_software(api: Api) -> None:
    # A version banner tells a scanner which known flaws to try.
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    requests = [
        b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",  # 401
        f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode(),
        f"GET /nothing HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode(),
        b"GET /sk_live_leak\x7f HTTP/1.1\r\nHost: x\r\n\r\n",  # aiohttp's parser refuses it
    ]
    for request in requests:
        answer = await raw_answer(api_port(api), request)
        head = answer.partition(b"\r\n\r\n")[0].lower()
        assert b"\r\nserver: reconciler\r\n" in head + b"\r\n", answer[:300]
        assert b"aiohttp" not in answer and b"python" not in head


async def test_idle_connections_are_capped_and_closed_after_the_header_timeout(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    limits = ConnectionLimits(4, header_timeout_s=0.5)
    async with serve_api(tmp_path, fake, limits=limits) as api:
        port = api_port(api)
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
        # At the cap, the connections idle longest make room: the application still gets in.
        status, document, _ = await api.call("GET", "/api/v1/events")
        assert status == 200 and document["events"] == []
        for reader, _ in idle[:4]:
            assert await asyncio.wait_for(reader.read(), 10) == b""
        # The others, silent, are closed once the header timeout has passed.
        for reader, _ in idle[4:]:
            assert await asyncio.wait_for(reader.read(), 10) == b""
        for _, writer in idle:
            writer.close()


async def test_a_full_disk_is_a_503_without_a_traceback(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.rt.store.health.watch(on_corrupt=lambda: None)  # as the daemon does
    # SQLITE_FULL without filling a disk: the database may not grow by a page.
    pages = next(iter(await api.rt.store.conn.execute_fetchall("PRAGMA page_count")))[0]
    await api.rt.store.conn.execute(f"PRAGMA max_page_count = {pages}")
    answers = []
    for n in range(500):
        order = {"source": "ccv", "order_id": f"O-{n:04d}", "external_reference": "r" * 120}
        status, document, headers = await api.call("POST", "/api/v1/orders", body=order)
        answers.append(status)
        if status != 201:
            break
    assert answers[-1] == 503, answers
    assert document == {"error": "the database cannot be used; try again later"}
    assert headers["Retry-After"] == "5"
    assert not any(r.exc_info for r in caplog.records)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["store.failing"]  # once, by the store's health


# --- orders -------------------------------------------------------------------------------------


async def test_track_read_and_untrack(api: Api, fake: FakeCCVWrites) -> None:
    track = {"source": "ccv", "order_id": ORDER, "external_reference": "shop-1"}
    status, document, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert status == 201
    assert document["order_id"] == ORDER and document["external_reference"] == "shop-1"
    assert document["status"] is None
    status, again, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert (status, again) == (200, document)

    status, read, _ = await api.call("GET", f"/api/v1/orders/ccv/{ORDER}")
    assert (status, read) == (200, document)
    assert fake.requests == []  # a plain read does not ask CCV

    fake.orders[ORDER] = "AwaitingPayment"
    status, fresh, _ = await api.call("GET", f"/api/v1/orders/ccv/{ORDER}?refresh=1")
    assert status == 200
    assert (fresh["status"], fresh["refreshed"]) == ("AwaitingPayment", True)
    assert len(fake.requests_for(ORDER)) == 1

    status, _, _ = await api.call("DELETE", f"/api/v1/orders/ccv/{ORDER}")
    assert status == 204
    status, _, _ = await api.call("GET", f"/api/v1/orders/ccv/{ORDER}")
    assert status == 404
    status, _, _ = await api.call("DELETE", f"/api/v1/orders/ccv/{ORDER}")
    assert status == 204


async def test_the_reference_an_order_keeps_as_its_alias_changes_nothing(
    api: Api, fake: FakeCCVWrites
) -> None:
    track = {"source": "ccv", "order_id": ORDER, "external_reference": "shop-wrong"}
    assert (await api.call("POST", "/api/v1/orders", body=track))[0] == 201
    fake.orders[ORDER], fake.refs[ORDER] = "Processing", "shop-at-ccv"
    status, fresh, _ = await api.call("GET", f"/api/v1/orders/ccv/{ORDER}?refresh=1")
    assert (status, fresh["external_reference"]) == (200, "shop-at-ccv")
    # The same request again (a nightly import) was a 409, as a move to another reference.
    status, again, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert (status, again["external_reference"]) == (200, "shop-at-ccv")
    track["external_reference"] = "shop-other"
    status, refused, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert (status, refused["field"]) == (409, "external_reference")


async def test_one_new_order_tracked_by_requests_at_once_is_new_to_one_of_them(api: Api) -> None:
    # "201 new, 200 already tracked": read before the writer's transaction, several got 201.
    body = {"source": "ccv", "order_id": ORDER}
    answers = await asyncio.gather(
        *(api.call("POST", "/api/v1/orders", body=body) for _ in range(8))
    )
    assert sorted(status for status, _, _ in answers) == [200] * 7 + [201]


async def test_a_reference_ccv_may_report_can_be_tracked_and_no_longer(api: Api) -> None:
    # One bound wherever a reference comes in: CCV's answers carry up to 256 characters.
    track = {"source": "ccv", "order_id": ORDER, "external_reference": "R" * 256}
    status, document, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert status == 201 and document["external_reference"] == "R" * 256
    track = {"source": "ccv", "order_id": "O-2", "external_reference": "R" * 257}
    status, document, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert status == 422 and document["field"] == "external_reference"
    assert "256" in document["error"]


async def test_a_refresh_is_bounded_by_its_timeout(api: Api, fake: FakeCCVWrites) -> None:
    await api.call("POST", "/api/v1/orders", body={"source": "ccv", "order_id": ORDER})
    fake.orders[ORDER] = "New"
    fake.hold = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, document, _ = await api.call("GET", f"/api/v1/orders/ccv/{ORDER}?refresh=1")
    assert loop.time() - started < 3.0  # refresh_timeout = 1s; the rest is a loaded CI box
    assert (status, document["status"], document["refreshed"]) == (200, None, False)
    fake.hold.set()


async def test_a_refresh_asked_while_the_api_stops_asks_no_provider(
    api: Api, fake: FakeCCVWrites
) -> None:
    # A check started then was cancelled by the stop's close() a second later: it asked CCV for
    # nothing that could be kept.
    await api.call("POST", "/api/v1/orders", body={"source": "ccv", "order_id": ORDER})
    fake.orders[ORDER] = "New"
    assert api.daemon.api is not None
    app = api.daemon.api._runner.app
    (orders,) = {
        getattr(route.handler, "__self__", None)
        for route in app.router.routes()
        if route.method == "GET" and route.resource and "{order_id" in route.resource.canonical
    }
    assert isinstance(orders, Orders)
    asked: list[object] = []
    check = orders.deps.refresh

    async def refresh(key: OrderKey) -> bool:
        asked.append(key)
        return bool(await check(key))

    orders.deps = dataclasses.replace(orders.deps, refresh=refresh)
    orders.stop()  # what the API's shutdown runs first
    status, document, _ = await api.call("GET", f"/api/v1/orders/ccv/{ORDER}?refresh=1")
    assert (status, document["status"], document["refreshed"]) == (200, None, False)
    assert asked == [] and fake.requests_for(ORDER) == []


# --- the events feed ----------------------------------------------------------------------------


async def add_events(api: Api, first: int, count: int) -> list[str]:
    """Commit `count` events in one transaction; return their ids."""
    store = api.rt.store
    events = [
        submit_uncertain_event(
            store.store_id, n, account="default", reference=f"r{n}", time=1.0, reason="test"
        )
        for n in range(first, first + count)
    ]
    async with store.transaction():
        await store.events.add(events)
    return [e.id for e in events]


async def test_the_feed_gives_every_event_once_in_commit_order_under_writes(api: Api) -> None:
    rng = random.Random(13)
    written: list[str] = []
    done = asyncio.Event()

    async def writer() -> None:
        n = 0
        for _ in range(60):
            count = rng.randint(1, 40)
            written.extend(await add_events(api, n, count))
            n += count
            await asyncio.sleep(0)  # one turn: the reader's, between two writes
        done.set()

    read: list[str] = []
    cursor = "0"
    task = asyncio.ensure_future(writer())
    while True:
        finished = done.is_set()
        status, page, _ = await api.call("GET", f"/api/v1/events?after={cursor}&limit=7")
        assert status == 200 and isinstance(page["next"], str)
        read.extend(e["id"] for e in page["events"])
        cursor = page["next"]
        if finished and not page["events"]:
            break
    await task
    assert read == written

    # The cursor is stable: asking again from an old one gives the same events.
    _, again, _ = await api.call("GET", "/api/v1/events?after=0&limit=5")
    assert [e["id"] for e in again["events"]] == written[:5]
    assert again["events"][0]["type"] == "order.submit_uncertain"


async def test_a_type_filter_moves_the_cursor_past_other_events(api: Api) -> None:
    await add_events(api, 0, 3)
    _, page, _ = await api.call("GET", "/api/v1/events?type=order.discovered")
    assert page["events"] == [] and page["next"] == "3"
    _, page, _ = await api.call("GET", "/api/v1/events?after=3")
    assert page == {"events": [], "next": "3"}


async def test_an_event_id_works_as_a_cursor(api: Api) -> None:
    # DESIGN.md's `after=ID`: a consumer that kept the id of the last event it handled reads on
    # from there, as from the `next` cursor of the page that brought it.
    ids = await add_events(api, 0, 5)
    _, page, _ = await api.call("GET", f"/api/v1/events?after={ids[1]}")
    assert [e["id"] for e in page["events"]] == ids[2:]
    _, by_cursor, _ = await api.call("GET", "/api/v1/events?after=2")
    assert by_cursor == page


async def test_the_cursor_holds_across_a_restart(tmp_path: Path, fake: FakeCCVWrites) -> None:
    async with serve_api(tmp_path, fake) as api:
        first = await add_events(api, 0, 5)
        _, page, _ = await api.call("GET", "/api/v1/events?limit=3")
        assert [e["id"] for e in page["events"]] == first[:3]
        cursor = page["next"]
    async with serve_api(tmp_path, fake) as api:
        later = await add_events(api, 5, 2)
        _, page, _ = await api.call("GET", f"/api/v1/events?after={cursor}")
        assert [e["id"] for e in page["events"]] == first[3:] + later


# --- CCV submit ---------------------------------------------------------------------------------


async def test_a_submit_sets_the_notification_url_and_tracks_the_order(
    api: Api, fake: FakeCCVWrites
) -> None:
    status, document, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-42")
    )
    assert status == 201
    order_id = document["orderId"]
    assert headers["Reconciler-External-Reference"] == "shop-42"
    assert headers["Reconciler-Order-Id"] == order_id
    (sent,) = fake.submits
    assert sent["externalReference"] == "shop-42"
    assert sent["order"] == {"orderNotes": None} and sent["notifyCustomerByEmail"] is True
    receiver = api.daemon.config.receiver
    assert receiver is not None
    assert sent["statusNotificationInformation"] == {
        "notificationUrl": notification_url(receiver, "default", reference="shop-42"),
        "notifyOnStatus": known_statuses("ccv"),
    }
    assert api.submission("shop-42") == ("succeeded", order_id)
    status, state, _ = await api.call("GET", "/api/v1/ccv/submissions/shop-42")
    assert (status, state["state"], state["order_id"]) == (200, "succeeded", order_id)
    assert state["http_status"] == 201
    _, order, _ = await api.call("GET", f"/api/v1/orders/ccv/{order_id}")
    assert order["external_reference"] == "shop-42" and order["next_check_at"] is not None


async def test_a_submit_without_reference_gets_one_and_keeps_given_statuses(
    api: Api, fake: FakeCCVWrites
) -> None:
    info = {"notifyOnStatus": ["Completed", "Failed"]}
    status, _, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(statusNotificationInformation=info)
    )
    assert status == 201
    reference = headers["Reconciler-External-Reference"]
    assert reference.startswith("rc-")
    assert fake.submits[0]["externalReference"] == reference
    assert fake.submits[0]["statusNotificationInformation"]["notifyOnStatus"] == [
        "Completed",
        "Failed",
    ]


async def test_the_order_id_field_is_configurable(tmp_path: Path, fake: FakeCCVWrites) -> None:
    fake.submit_replies = [json_reply(200, {"data": {"x": 1}, "orderReference": "abc-123"})]
    extra = 'ccv_order_id_fields = ["orderReference"]'
    async with serve_api(tmp_path, fake, api_extra=extra) as api:
        status, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=submit_body())
        assert status == 200 and headers["Reconciler-Order-Id"] == "abc-123"
        assert api.rows("SELECT order_id FROM orders") == [("abc-123",)]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"data": {"x": 1}}, "no_order_id"),
        ({"orderId": "a b"}, "unusable_order_id"),  # CCV named its order: it made it
        (["not", "an", "object"], "no_order_id"),
    ],
)
async def test_a_success_without_a_readable_order_id_is_uncertain_not_unfollowed(
    api: Api, fake: FakeCCVWrites, answer: object, reason: str
) -> None:
    fake.submit_replies = [json_reply(201, answer)]
    body = submit_body(externalReference="no-id-1")
    status, document, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (status, document) == (201, answer)  # CCV's answer, passed back
    assert "Reconciler-Order-Id" not in headers
    assert api.submission("no-id-1") == ("uncertain", None)
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]
    events = api.rows("SELECT type, json_extract(body, '$.data.reason') FROM events ORDER BY seq")
    assert events == [(EventType.SUBMIT_UNCERTAIN.value, reason)]
    _, state, _ = await api.call("GET", "/api/v1/ccv/submissions/no-id-1")
    assert (state["state"], state["http_status"]) == ("uncertain", 201)
    # Once someone found the id at CCV, tracking it with the reference settles it.
    track = {"source": "ccv", "order_id": ORDER, "external_reference": "no-id-1"}
    status, _, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert status == 201
    assert api.submission("no-id-1") == ("resolved", ORDER)
    assert len(fake.submits) == 1


@pytest.mark.parametrize("status", [500, 503])
async def test_a_submit_ccv_answered_with_a_5xx_is_uncertain_and_never_resent(
    api: Api, fake: FakeCCVWrites, status: int
) -> None:
    # "Server error" may come after CCV made the order: an application retrying its 5xx with
    # the same reference would order twice.
    fake.submit_replies = [json_reply(status, {"message": "Server error"})]
    body = submit_body(externalReference="shop-5")
    got, document, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (got, document) == (status, {"message": "Server error"})
    assert headers["Reconciler-External-Reference"] == "shop-5"
    assert api.submission("shop-5") == ("uncertain", None)
    events = api.rows("SELECT type, json_extract(body, '$.data.external_reference') FROM events")
    assert events == [(EventType.SUBMIT_UNCERTAIN.value, "shop-5")]
    got, _, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert got == 409 and len(fake.submits) == 1
    # reconciler's own answer names the reference as CCV's do (the CLI logs it from there).
    assert headers["Reconciler-External-Reference"] == "shop-5"


@pytest.mark.parametrize("status", [400, 403])
async def test_a_refused_submit_is_passed_back_and_nothing_is_tracked(
    api: Api, fake: FakeCCVWrites, status: int
) -> None:
    fake.submit_replies = [json_reply(status, {"message": "Order data has missing values"})]
    got, document, headers = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-7")
    )
    assert (got, document) == (status, {"message": "Order data has missing values"})
    assert headers["Reconciler-External-Reference"] == "shop-7"
    assert len(fake.submits) == 1  # never retried
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]
    assert api.submission("shop-7") == ("failed", None)
    # A definite refusal may be corrected and sent again with the same reference.
    got, _, _ = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-7")
    )
    assert got == 201 and len(fake.submits) == 2
    assert api.rows("SELECT count(*) FROM orders") == [(1,)]


@pytest.mark.parametrize(
    ("reply", "status"),
    [(json_reply(201, {"orderId": "late"}, delay_s=3.0), 504), (Reply(DROP), 502)],
)
async def test_a_lost_answer_makes_the_submit_uncertain_and_it_is_never_resent(
    api: Api, fake: FakeCCVWrites, reply: Reply, status: int
) -> None:
    fake.submit_replies = [reply]
    body = submit_body(externalReference="shop-9")
    got, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert got == status
    assert (document["state"], document["external_reference"]) == ("uncertain", "shop-9")
    assert api.submission("shop-9") == ("uncertain", None)
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]
    events = api.rows("SELECT type, json_extract(body, '$.data.external_reference') FROM events")
    assert events == [(EventType.SUBMIT_UNCERTAIN.value, "shop-9")]

    # The caller retries: refused, nothing sent again.
    got, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (got, document["state"], document["field"]) == (409, "uncertain", "externalReference")
    assert len(fake.submits) == 1
    assert len(api.rows("SELECT id FROM events")) == 1

    status, state, _ = await api.call("GET", "/api/v1/ccv/submissions/shop-9")
    assert (status, state["state"], state["closed_at"] is not None) == (200, "uncertain", True)

    # The first notification for the reference settles it.
    await api.daemon.hub.check_ccv_reference("default", "shop-9", 0.0)
    assert api.submission("shop-9") == ("resolved", None)
    _, state, _ = await api.call("GET", "/api/v1/ccv/submissions/shop-9")
    assert state["state"] == "resolved"


async def test_tracking_the_order_with_its_reference_settles_an_uncertain_submit(
    api: Api, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [Reply(DROP)]
    await api.call("POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-3"))
    track = {"source": "ccv", "order_id": ORDER, "external_reference": "shop-3"}
    status, _, _ = await api.call("POST", "/api/v1/orders", body=track)
    assert status == 201
    assert api.submission("shop-3") == ("resolved", ORDER)


async def test_a_submit_that_never_reached_ccv_is_not_uncertain(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    async with serve_api(tmp_path, fake) as api:
        await fake.close()  # nothing listens on its port any more
        status, document, _ = await api.call(
            "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-5")
        )
        assert status == 502 and "nothing was sent" in document["error"]
        assert api.submission("shop-5") == ("failed", None)
        assert api.rows("SELECT count(*) FROM events") == [(0,)]


# --- pricing ------------------------------------------------------------------------------------

GOOD_PRICES = {
    "currency": "EUR",
    "shippingCost": 5,
    "oneOffPriceCouponCode": "",
    "oneOffPriceDiscount": 0,
    "totalAmountToBePaidImmediately": 126,
    "totalRevenueForFullYear": 121,
    "periodPricingDetails": [
        {
            "period": "OneOff",
            "excludingTax": 100,
            "singleExcludingTax": 100,
            "includingTax": 121,
            "taxAmountsPerTaxRate": [{"taxRate": 21, "taxAmount": 21}],
        }
    ],
    "order": {},
}


async def test_inconsistent_prices_get_422_with_every_problem_and_are_not_sent(
    api: Api, fake: FakeCCVWrites
) -> None:
    body = {**GOOD_PRICES, "currency": "USD", "totalAmountToBePaidImmediately": 100}
    status, document, _ = await api.call("PATCH", "/api/v1/ccv/pricing", body=body)
    assert status == 422
    paths = {p["path"] for p in document["problems"] if p["blocking"]}
    assert {"$.currency", "$.totalAmountToBePaidImmediately"} <= paths
    assert fake.pricing_calls == []


async def test_consistent_prices_are_forwarded_and_the_answer_passed_back(
    api: Api, fake: FakeCCVWrites
) -> None:
    status, document, _ = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert (status, document) == (200, {"message": "Shopping cart pricing details set"})
    assert fake.pricing_calls == [GOOD_PRICES]
    fake.pricing_replies = [json_reply(400, {"message": "Shopping cart data has invalid values"})]
    status, document, _ = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
    assert (status, document) == (400, {"message": "Shopping cart data has invalid values"})


async def test_an_order_past_its_watch_shows_no_next_check_as_orders_json(api: Api) -> None:
    # A CCV order `Failed` 200 days ago (watch_settled 180 days), its daily check stored.
    now = time.time()
    api.rows(
        "INSERT INTO orders (source, account, order_id, status, end_state, last_changed, "
        "next_check_at) VALUES ('ccv', 'default', ?, 'Failed', 0, ?, ?)",
        ORDER,
        now - 200 * 86400,
        now + 3600,
    )
    status, order, _ = await api.call("GET", f"/api/v1/orders/ccv/{ORDER}")
    assert (status, order["status"], order["next_check_at"]) == (200, "Failed", None)
    status, order, _ = await api.call(
        "POST", "/api/v1/orders", body={"source": "ccv", "order_id": ORDER}
    )
    assert (status, order["next_check_at"]) == (200, None)


async def test_an_order_not_checked_yet_is_due_since_it_was_tracked(api: Api) -> None:
    # Its stored first check is 0, "at once": the answer showed 1970-01-01T00:00:00.000Z.
    before = time.time()
    body = {"source": "ccv", "order_id": ORDER}
    status, tracked, _ = await api.call("POST", "/api/v1/orders", body=body)
    after = time.time()
    assert status == 201 and tracked["last_checked"] is None
    due = datetime.fromisoformat(tracked["next_check_at"].replace("Z", "+00:00")).timestamp()
    assert before - 0.001 <= due <= after
    for method, path in (("POST", "/api/v1/orders"), ("GET", f"/api/v1/orders/ccv/{ORDER}")):
        status, again, _ = await api.call(method, path, body=body if method == "POST" else None)
        assert (status, again["next_check_at"]) == (200, tracked["next_check_at"])
