"""CCV client against a loopback fake: statuses, failures, retries, bounds, secrets."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import pytest
from yarl import URL

from reconciler.config import RetryConfig, Secret
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.sources.ccv import MAX_BODY_BYTES, PROBE_ORDER_ID, CCVClient
from reconciler.sources.errors import AuthenticationFailed, OrderRefused, SourceUnavailable
from reconciler.sources.http import Stopping, parse_retry_after, request, retry_delay
from tests.fake_providers import CCV_KEY, STAMPED, FakeCCV, Reply, ccv_config, html_page


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCV]:
    async with FakeCCV() as fake:
        yield fake


def key(order_id: str) -> OrderKey:
    return OrderKey("ccv", "default", order_id)


def failed(order_id: str, reason: str) -> Observation:
    return Observation(key(order_id), Outcome.FAILED, reason=reason, asked=STAMPED)


class Collector:
    """An emit callback that keeps what it got."""

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    async def __call__(self, observation: Observation) -> None:
        self.seen.append(observation)


def worker_tasks() -> set[asyncio.Task[object]]:
    """Return the pass's worker tasks still alive."""
    return {
        task
        for task in asyncio.all_tasks()
        if "drain" in getattr(task.get_coro(), "__qualname__", "")
    }


# --- one order ----------------------------------------------------------------------------


async def test_statuses_and_external_reference(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    fake.orders.update({"A1": "Completed", "A2": "AwaitingPayment", "A3": "TotallyNewStatus"})
    fake.refs["A1"] = "shop-123"
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())

    assert await client.fetch("A1") == Observation(
        key("A1"), Outcome.OK, "Completed", "shop-123", asked=STAMPED
    )
    assert await client.fetch("A2") == Observation(
        key("A2"), Outcome.OK, "AwaitingPayment", asked=STAMPED
    )
    # A word CCV never documented is kept verbatim, not refused.
    assert await client.fetch("A3") == Observation(
        key("A3"), Outcome.OK, "TotallyNewStatus", asked=STAMPED
    )


@pytest.mark.parametrize(
    ("reference", "said"),
    [("42", "int"), ("7" * 5000, "int"), ('""', None), ("null", None), ('["r"]', "list")],
)
async def test_a_reference_that_is_no_text_or_empty_is_dropped(
    fake: FakeCCV,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    reference: str,
    said: str | None,
) -> None:
    body = '{"orderStatus": "New", "externalReference": ' + reference + "}"
    fake.replies["A1"] = Reply(200, body, "application/json")
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("A1") == Observation(
        key("A1"), Outcome.OK, "New", None, asked=STAMPED
    )
    # Not the documented shape: never dropped in silence.
    dropped = [r for r in caplog.records if r.getMessage() == "ccv.reference_dropped"]
    assert [r.fields["types"] for r in dropped] == ([[said]] if said else [])  # type: ignore[attr-defined]
    assert all(r.levelname == "WARNING" and r.fields["order_ids"] == ["A1"] for r in dropped)  # type: ignore[attr-defined]


async def test_references_dropped_in_a_pass_are_one_line_not_one_per_order(
    fake: FakeCCV, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # A CCV that answers every reference as a number: one line a pass, naming a few orders.
    ids = [f"N{i}" for i in range(30)]
    for order_id in ids:
        fake.replies[order_id] = Reply(
            200, '{"orderStatus": "New", "externalReference": 123456}', "application/json"
        )
    emit = Collector()
    await CCVClient(ccv_config(fake.base_url, concurrency=4), session, secrets=()).check_orders(
        ids, emit
    )
    assert [o.status for o in emit.seen] == ["New"] * 30
    [line] = [r for r in caplog.records if r.getMessage() == "ccv.reference_dropped"]
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["account"], fields["orders"], fields["types"]) == ("default", 30, ["int"])
    assert len(fields["order_ids"]) == 5 and set(fields["order_ids"]) <= set(ids)


@pytest.mark.parametrize("status", [200, 201, 203])
async def test_any_2xx_carrying_an_order_status_is_the_orders_status(
    fake: FakeCCV, session: aiohttp.ClientSession, status: int
) -> None:
    # As the probe takes it: a 2xx carrying an orderStatus is CCV's answer.
    fake.replies["A1"] = Reply(status, '{"orderStatus": "Shipped"}', "application/json")
    fake.replies["A2"] = Reply(status, '{"message": "maintenance"}', "application/json")
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("A1") == Observation(key("A1"), Outcome.OK, "Shipped", asked=STAMPED)
    assert await client.fetch("A2") == failed("A2", "protocol")


async def test_an_integer_longer_than_python_reads_does_not_spoil_the_answer(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    # Legal JSON, past int()'s 4,300 digits: the status holds, and CCV's 404 stays its 404.
    digits = "9" * 5000
    fake.replies["A1"] = Reply(
        200, '{"orderStatus": "New", "x": ' + digits + ', "y": 1}', "application/json"
    )
    fake.replies["A2"] = Reply(
        404, '{"message": "Not found", "code": ' + digits + "}", "application/json"
    )
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("A1") == Observation(key("A1"), Outcome.OK, "New", asked=STAMPED)
    assert (await client.fetch("A2")).outcome is Outcome.NOT_FOUND


@pytest.mark.parametrize(
    "reference",
    [
        '"\\udcff"',  # a lone surrogate: no database, log or JSON encoder takes it
        '"\\ud800 tail"',
        '"line\\nbreak"',
        '"bell\\u0007"',
        '"' + "r" * 257 + '"',
        '".."',  # a URL path segment of its own: no notification URL can name it
    ],
)
async def test_an_unstorable_reference_fails_that_order_alone(
    fake: FakeCCV, session: aiohttp.ClientSession, reference: str
) -> None:
    fake.orders.update({"A1": "New", "A3": "Screening"})
    fake.replies["A2"] = Reply(
        200, '{"orderStatus": "New", "externalReference": ' + reference + "}", "application/json"
    )
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    seen: list[Observation] = []

    async def emit(observation: Observation) -> None:
        seen.append(observation)

    await client.check_orders(["A1", "A2", "A3"], emit)
    assert sorted(seen) == [
        Observation(key("A1"), Outcome.OK, "New", asked=STAMPED),
        # The reason says it is the reference (`order.check_failed` logs it).
        Observation(key("A2"), Outcome.FAILED, reason="unusable_reference", asked=STAMPED),
        Observation(key("A3"), Outcome.OK, "Screening", asked=STAMPED),
    ]


async def test_a_reference_with_any_printable_text_is_kept(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    fake.replies["A1"] = Reply(
        200,
        '{"orderStatus": "New", "externalReference": "Bestellung Nr. 7 \\u00e9 \\ud83d\\ude00"}',
    )
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    observation = await client.fetch("A1")
    assert observation == Observation(
        key("A1"), Outcome.OK, "New", "Bestellung Nr. 7 é 😀", asked=STAMPED
    )


async def test_404_is_not_found(fake: FakeCCV, session: aiohttp.ClientSession) -> None:
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("nope") == Observation(key("nope"), Outcome.NOT_FOUND, asked=STAMPED)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(404, '{"message": "Not found"}', "application/json; charset=utf-8"),
        Reply(404, '{"title": "Not Found", "status": 404}', "application/problem+json"),
        Reply(404, '{"message": "Not found"}', "Application/JSON"),
    ],
    ids=["charset", "problem-json", "upper-case"],
)
async def test_ccvs_json_404_in_any_json_label_is_not_found(
    fake: FakeCCV, session: aiohttp.ClientSession, reply: Reply
) -> None:
    fake.replies["A1"] = reply
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("A1") == Observation(key("A1"), Outcome.NOT_FOUND, asked=STAMPED)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(404, "<html><body><h1>404 Not Found</h1></body></html>", "text/html"),
        Reply(404, "Not Found", "text/plain"),
        Reply(404, "", "application/octet-stream"),
        Reply(404, "<html><body><h1>404 Not Found</h1></body></html>", "application/json"),
        Reply(404, "", "application/json"),
    ],
    ids=["html", "text", "empty", "html-labelled-json", "empty-labelled-json"],
)
async def test_a_404_that_is_not_ccvs_json_is_no_not_found(
    fake: FakeCCV, session: aiohttp.ClientSession, reply: Reply
) -> None:
    # A gateway's or a wrong base URL's 404 says nothing about the order.
    fake.orders["A1"] = "New"
    fake.replies["A1"] = reply
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("A1") == failed("A1", "gateway_404")


async def test_a_wave_of_gateway_404s_opens_the_breaker(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    fake.always = Reply(404, "<html>Not Found</html>", "text/html")
    client = CCVClient(ccv_config(fake.base_url, concurrency=4), session, secrets=())
    with pytest.raises(SourceUnavailable, match="consecutive failures"):
        await client.check_orders([f"O{i}" for i in range(200)], Collector())
    assert len(fake.requests) < 20


async def test_401_costs_exactly_one_request(fake: FakeCCV, session: aiohttp.ClientSession) -> None:
    fake.always = Reply(401, "Unauthorized")
    fake.orders.update({f"O{i}": "New" for i in range(50)})
    client = CCVClient(ccv_config(fake.base_url, concurrency=8), session, secrets=())
    emit = Collector()

    with pytest.raises(AuthenticationFailed) as caught:
        await client.check_orders([f"O{i}" for i in range(50)], emit)

    assert str(caught.value) == "http 401"
    assert len(fake.requests) == 1
    assert emit.seen == []


async def test_a_403_fails_that_order_alone(fake: FakeCCV, session: aiohttp.ClientSession) -> None:
    ids = [f"O{i}" for i in range(4)]
    fake.orders.update(dict.fromkeys(ids, "New"))
    fake.replies["O1"] = Reply(403, '{"message": "Forbidden"}', "application/json")
    emit = Collector()
    await CCVClient(ccv_config(fake.base_url, concurrency=1), session, secrets=()).check_orders(
        ids, emit
    )
    assert sorted(emit.seen) == sorted(
        [Observation(key(i), Outcome.OK, "New", asked=STAMPED) for i in ("O0", "O2", "O3")]
        + [failed("O1", "http_403")]
    )


async def test_403_for_every_order_is_no_outage(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    # Each order is asked once (no retries, no breaker); the pass judges the account.
    fake.always = Reply(403, "Forbidden")
    emit = Collector()
    client = CCVClient(ccv_config(fake.base_url, concurrency=2), session, secrets=())
    await client.check_orders([f"O{i}" for i in range(30)], emit)
    assert [o.reason for o in emit.seen] == ["http_403"] * 30
    assert len(fake.requests) == 30


@pytest.mark.parametrize(
    "reply",
    [
        Reply(404, '{"message": "Not found"}', "application/json"),
        Reply(400, '{"message": "invalid order id"}', "application/json"),
        Reply(200, '{"orderStatus": "New"}', "application/json"),
        Reply(200, '{"orderStatus": "New"}', "text/plain"),
        # CCV answered about the order, in words no check keeps: as a check counts it.
        Reply(200, '{"orderStatus": "A\\nB"}', "application/json"),
    ],
    ids=["404", "400-json", "200", "200-mislabelled", "200-control"],
)
async def test_probe_is_proved_by_any_answer_that_accepted_the_key(
    fake: FakeCCV, session: aiohttp.ClientSession, reply: Reply
) -> None:
    fake.always = reply
    await CCVClient(ccv_config(fake.base_url), session, secrets=()).probe()
    (seen,) = fake.requests
    assert seen.order_id == PROBE_ORDER_ID


@pytest.mark.parametrize(
    ("reply", "error", "text"),
    [
        (Reply(401, "Unauthorized"), AuthenticationFailed, "http 401"),
        (Reply(404, "<html>Not Found</html>", "text/html"), SourceUnavailable, "gateway 404"),
        (
            Reply(404, "<html>Not Found</html>", "application/json"),
            SourceUnavailable,
            "gateway 404",
        ),
        # For an id that is no one's order, a 403 is about the key (check --online: 78).
        (Reply(403, "Forbidden"), AuthenticationFailed, "http 403"),
        (Reply(503), SourceUnavailable, "http 503"),
        # What makes every check fail with `protocol` proves nothing either.
        (Reply(200, "OK", "text/plain"), SourceUnavailable, "protocol (http 200)"),
        (Reply(200, "", "application/json"), SourceUnavailable, "protocol (http 200)"),
        (Reply(204), SourceUnavailable, "protocol (http 204)"),
        (
            Reply(200, '{"message": "Service is under maintenance"}', "application/json"),
            SourceUnavailable,
            "protocol (http 200)",
        ),
        # No status word: what a gateway may send on every path, as a check takes it.
        (
            Reply(200, '{"orderStatus": null}', "application/json"),
            SourceUnavailable,
            "protocol (http 200)",
        ),
        (
            Reply(200, '{"orderStatus": 7}', "application/json"),
            SourceUnavailable,
            "protocol (http 200)",
        ),
        (html_page(200), SourceUnavailable, "html page (http 200)"),
        (
            Reply(400, "\r\n<html><h1>400 Bad Request</h1></html>", "text/html"),
            SourceUnavailable,
            "html page (http 400)",
        ),
        # CCV's own error answers are JSON: a plain 400 came from something in between (a
        # proxy, a firewall) that never passed the key on.
        (Reply(400, "Bad Request", "text/plain"), SourceUnavailable, "gateway 400"),
        (Reply(400, "Bad Request", "application/json"), SourceUnavailable, "gateway 400"),
    ],
    ids=[
        "401",
        "gateway-404",
        "html-404-labelled-json",
        "403",
        "503",
        "200-text",
        "200-empty",
        "204",
        "200-json-no-status",
        "200-null-status",
        "200-number-status",
        "200-page",
        "400-page",
        "400-text",
        "400-text-labelled-json",
    ],
)
async def test_probe_fails_on_answers_that_prove_nothing(
    fake: FakeCCV,
    session: aiohttp.ClientSession,
    reply: Reply,
    error: type[Exception],
    text: str,
) -> None:
    fake.always = reply
    with pytest.raises(error) as caught:
        await CCVClient(ccv_config(fake.base_url), session, secrets=()).probe()
    assert str(caught.value) == text


async def test_wrong_key_is_refused_by_the_provider(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    config = ccv_config(fake.base_url, api_key=Secret("t_wrong"), concurrency=8)
    with pytest.raises(AuthenticationFailed):
        await CCVClient(config, session, secrets=()).check_orders(
            [f"O{i}" for i in range(50)], Collector()
        )
    assert len(fake.requests) == 1


async def test_auth_failure_mid_pass_stops_every_worker(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    ids = [f"O{i}" for i in range(200)]
    fake.orders.update(dict.fromkeys(ids, "New"))

    async def emit(observation: Observation) -> None:
        # The key is revoked right after the first answer.
        fake.always = Reply(401)

    client = CCVClient(ccv_config(fake.base_url, concurrency=8), session, secrets=())
    with pytest.raises(AuthenticationFailed):
        await client.check_orders(ids, emit)

    # After the first answer a 401 is one order's own (it may be), until a run of them as long
    # as the breaker's (2 x concurrency) says the key is refused: then at most one per worker.
    assert 1 + 16 <= len(fake.requests) <= 1 + 16 + 8
    assert worker_tasks() == set()


async def test_a_401_after_an_answer_fails_that_order_alone(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    ids = [f"O{i}" for i in range(6)]
    fake.orders.update(dict.fromkeys(ids, "New"))
    fake.replies["O3"] = Reply(401, '{"error":"Unauthorized"}', "application/json")
    emit = Collector()
    client = CCVClient(ccv_config(fake.base_url, concurrency=2), session, secrets=())
    await client.check_orders(ids, emit)
    failed = [o for o in emit.seen if o.outcome is Outcome.FAILED]
    assert [(o.key.order_id, o.reason) for o in failed] == [("O3", "http_401")]
    assert failed[0].asked is not None
    assert sorted(o.key.order_id for o in emit.seen) == ids
    # The same order first, before any answer took the key: the pass stops (OrderRefused).
    fake.requests.clear()
    with pytest.raises(OrderRefused) as caught:
        await client.check_orders(["O3", *ids], Collector())
    assert (caught.value.order_id, str(caught.value)) == ("O3", "http 401")
    assert len(fake.requests) == 1
    # Told that an answer took it, the caller's: the order's failure again.
    emit = Collector()
    await client.check_orders(["O3", "O4"], emit, key_taken=True)
    assert [o.reason for o in emit.seen] == ["http_401", None]


async def test_500_then_200_is_retried(fake: FakeCCV, session: aiohttp.ClientSession) -> None:
    fake.orders["A1"] = "Screening"
    fake.script_for["A1"] = [Reply(500, "oops")]
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("A1") == Observation(
        key("A1"), Outcome.OK, "Screening", asked=STAMPED
    )
    assert len(fake.requests) == 2


@pytest.mark.parametrize(("status", "reason"), [(503, "http_503"), (429, "http_429")])
async def test_retryable_forever_fails_after_all_attempts(
    fake: FakeCCV, session: aiohttp.ClientSession, status: int, reason: str
) -> None:
    fake.always = Reply(status)
    retry = RetryConfig(attempts=3, backoff_s=0.001, max_backoff_s=0.01)
    client = CCVClient(ccv_config(fake.base_url, retry=retry), session, secrets=())
    assert await client.fetch("A1") == failed("A1", reason)
    assert len(fake.requests) == 1 + 3


async def test_retry_after_is_honoured(fake: FakeCCV, session: aiohttp.ClientSession) -> None:
    fake.orders["A1"] = "New"
    fake.script_for["A1"] = [Reply(503, headers={"Retry-After": "1"})]
    retry = RetryConfig(attempts=2, backoff_s=0.001, max_backoff_s=5.0)
    client = CCVClient(ccv_config(fake.base_url, retry=retry), session, secrets=())

    assert (await client.fetch("A1")).status == "New"
    first, second = fake.requests
    assert 0.9 <= second.at - first.at < 3.0


async def test_retry_after_is_capped(fake: FakeCCV, session: aiohttp.ClientSession) -> None:
    fake.orders["A1"] = "New"
    fake.script_for["A1"] = [Reply(429, headers={"Retry-After": "3600"})]
    retry = RetryConfig(attempts=2, backoff_s=0.001, max_backoff_s=0.05)
    client = CCVClient(ccv_config(fake.base_url, retry=retry), session, secrets=())

    assert (await client.fetch("A1")).status == "New"
    first, second = fake.requests
    # The cap (0.05 s), far below the hour asked and below the default cap (30 s): a loaded
    # machine's margin, still telling the configured cap from a fixed one.
    assert second.at - first.at < 5


async def test_timeout_fails_the_check(fake: FakeCCV, session: aiohttp.ClientSession) -> None:
    fake.orders["A1"] = "New"
    fake.delay_s = 5.0
    retry = RetryConfig(attempts=1, backoff_s=0.001, max_backoff_s=0.01)
    client = CCVClient(ccv_config(fake.base_url, timeout_s=0.2, retry=retry), session, secrets=())

    started = asyncio.get_running_loop().time()
    assert await client.fetch("A1") == failed("A1", "timeout")
    # Below one answer's 5 s: neither attempt was waited out (0.2 s each).
    assert asyncio.get_running_loop().time() - started < 5.0
    assert len(fake.requests) == 2


async def test_connection_refused_fails_the_check(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = CCVClient(ccv_config(f"http://127.0.0.1:{port}"), session, secrets=())
    assert await client.fetch("A1") == failed("A1", "connection")


@pytest.mark.parametrize(
    "reply",
    [
        html_page(),
        Reply(200, "<html>login</html>", "application/json"),
        Reply(200, "{", "application/json"),
        Reply(200, b"\xff\xfe{}", "application/json"),
        Reply(200, "[]", "application/json"),
        Reply(200, '{"status": "New"}', "application/json"),
        Reply(200, '{"orderStatus": null}', "application/json"),
        Reply(200, '{"orderStatus": 5}', "application/json"),
        Reply(200, "[" * 100_000, "application/json"),
        Reply(200, "x" * (MAX_BODY_BYTES + 1), "application/json"),
    ],
    ids=lambda reply: repr(reply.body[:24]),
)
async def test_not_the_protocol_fails_the_check(
    fake: FakeCCV, session: aiohttp.ClientSession, reply: Reply
) -> None:
    fake.replies["A1"] = reply
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("A1") == failed("A1", "protocol")
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        '{"orderStatus": ""}',
        '{"orderStatus": "   "}',
        '{"orderStatus": "New\\nline"}',
        # A control character or a line separator at an end is no blank: not dropped.
        '{"orderStatus": "Completed\\n"}',
        '{"orderStatus": "\\u001fCompleted"}',
        '{"orderStatus": "Completed\\u0085"}',
        '{"orderStatus": "\\u2028x"}',
        '{"orderStatus": "%s"}' % ("x" * 65),
    ],
    ids=lambda body: body[:24],
)
async def test_an_order_status_no_check_keeps_fails_that_order_as_unusable_status(
    fake: FakeCCV, session: aiohttp.ClientSession, body: str
) -> None:
    # CCV took the key and answered about the order: not `protocol` (something in between),
    # and to the account's health an answer (tests/poller/test_ccv_unkept_answers.py).
    fake.replies["A1"] = Reply(200, body, "application/json")
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("A1") == failed("A1", "unusable_status")


async def test_blanks_around_the_status_word_are_not_part_of_it(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    # Before, the order failed every check (a debug line only) and never got a status.
    fake.replies["A1"] = Reply(200, '{"orderStatus": " Completed\\t"}', "application/json")
    seen = await CCVClient(ccv_config(fake.base_url), session, secrets=()).fetch("A1")
    assert (seen.outcome, seen.status) == (Outcome.OK, "Completed")


@pytest.mark.parametrize(
    ("body", "charset", "expected"),
    [
        # As README says: JSON's own encodings, told by the first bytes, whatever is declared.
        ('{"orderStatus": "%s"}' % ("x" * 64), "utf-8", "x" * 64),
        ('{"orderStatus": "New", "r": "\u00e9"}'.encode("utf-16"), "utf-16", "New"),
        ('{"orderStatus": "New", "r": "\u00e9"}'.encode("utf-16-le"), "iso-8859-1", "New"),
        ('{"orderStatus": "New", "r": "\u00e9"}'.encode("utf-8-sig"), "iso-8859-1", "New"),
        ('{"orderStatus": "New"}'.encode("latin-1"), "iso-8859-1", "New"),
        ('{"orderStatus": "New", "r": "\u00e9"}'.encode("latin-1"), "iso-8859-1", None),
    ],
    ids=["64-characters", "utf-16-bom", "utf-16-no-bom", "utf-8-bom", "ascii", "latin-1"],
)
async def test_a_status_answer_is_read_as_json_is_written_whatever_its_charset(
    fake: FakeCCV,
    session: aiohttp.ClientSession,
    body: str | bytes,
    charset: str,
    expected: str | None,
) -> None:
    fake.replies["A1"] = Reply(200, body, f"application/json; charset={charset}")
    seen = await CCVClient(ccv_config(fake.base_url), session, secrets=()).fetch("A1")
    if expected is None:
        assert seen == failed("A1", "protocol")
    else:
        assert (seen.outcome, seen.status) == (Outcome.OK, expected)


@pytest.mark.parametrize("status", [302, 400, 410])
async def test_other_answers_fail_with_their_code(
    fake: FakeCCV, session: aiohttp.ClientSession, status: int
) -> None:
    # A redirect is not followed: it would take the credential elsewhere.
    fake.replies["A1"] = Reply(status, headers={"Location": "http://127.0.0.1:9/elsewhere"})
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert await client.fetch("A1") == failed("A1", f"http_{status}")
    assert len(fake.requests) == 1


async def test_an_answer_echoing_a_secret_of_the_config_is_no_status(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    # The client is not made without the config's secrets: given none, it looked for the API
    # key alone, and an answer echoing the CCNow password was a status, kept and logged.
    password = "Pw0rd-Zq9+&x=7%Se"
    with pytest.raises(TypeError, match="secrets"):
        CCVClient(ccv_config(fake.base_url), session)  # type: ignore[call-arg]
    fake.orders.update({"A1": password, "A2": "Completed", "A3": "Completed"})
    fake.refs["A3"] = f"ref-{password}"
    client = CCVClient(ccv_config(fake.base_url), session, secrets=[password])
    assert await client.fetch("A1") == failed("A1", "unusable_status")
    assert (await client.fetch("A2")).status == "Completed"
    # Echoed in the reference, it is the reference that is unusable (it was `unusable_status`).
    assert await client.fetch("A3") == failed("A3", "unusable_reference")


# --- ids and URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order_id",
    [
        "",
        "a/b",
        "..",
        "a..b",
        "a b",
        "a\tb",
        "a\x00b",
        "a\x7fb",
        "a\\b",
        "a?b",
        "a#b",
        "a%2Fb",
        "x" * 129,
        "café-7",  # ids are ASCII
        "\ufeffO-1",
        "O\u200b-1",
    ],
)
async def test_unsafe_ids_make_no_request(
    fake: FakeCCV, session: aiohttp.ClientSession, order_id: str
) -> None:
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    emit = Collector()
    assert await client.fetch(order_id) == failed(order_id, "invalid_id")
    await client.check_orders([order_id], emit)
    assert emit.seen == [failed(order_id, "invalid_id")]
    assert fake.requests == []


@pytest.mark.parametrize(
    ("order_id", "segment"),
    [
        ("ord:1+2", "ord%3A1%2B2"),
        ("x!y*z", "x%21y%2Az"),
        ("a=b&c", "a%3Db%26c"),
        ("ord-1_2.3~x", "ord-1_2.3~x"),  # unreserved characters go as they are
    ],
)
async def test_ids_are_quoted_as_one_path_segment(
    fake: FakeCCV, session: aiohttp.ClientSession, order_id: str, segment: str
) -> None:
    fake.orders[order_id] = "New"
    client = CCVClient(ccv_config(fake.base_url), session, secrets=())
    assert (await client.fetch(order_id)).status == "New"
    (seen,) = fake.requests
    assert seen.raw_path == f"/api/ordercompletion/reseller/order/{segment}/status"
    assert seen.order_id == order_id


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ("basic", "Authorization", "Basic " + base64.b64encode(f"{CCV_KEY}:".encode()).decode()),
        ("bearer", "Authorization", f"Bearer {CCV_KEY}"),
        ("header", "X-Api-Key", CCV_KEY),
    ],
)
async def test_key_is_sent_as_configured(
    session: aiohttp.ClientSession, auth: str, header: str, value: str
) -> None:
    async with FakeCCV(auth=auth, auth_header=header) as fake:
        fake.orders["A1"] = "New"
        config = ccv_config(fake.base_url, auth=auth, auth_header=header)
        assert (await CCVClient(config, session, secrets=()).fetch("A1")).status == "New"
        (seen,) = fake.requests
        assert seen.headers[header] == value
        assert seen.headers["Accept"] == "application/json"


async def test_key_never_reaches_logs_or_exceptions(
    fake: FakeCCV, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = base64.b64encode(f"{CCV_KEY}:".encode()).decode()
    texts: list[str] = []
    retry = RetryConfig(attempts=1, backoff_s=0.001, max_backoff_s=0.01)
    client = CCVClient(ccv_config(fake.base_url, timeout_s=0.2, retry=retry), session, secrets=())

    fake.replies.update({"A1": Reply(503), "A2": html_page(), "A3": Reply(400)})
    fake.script_for["A4"] = [Reply(200, delay_s=5.0), Reply(200, delay_s=5.0)]
    for order_id in ("A1", "A2", "A3", "A4"):
        texts.append(repr(await client.fetch(order_id)))
    fake.always = Reply(503)
    with pytest.raises(SourceUnavailable) as outage:
        await client.check_orders([f"O{i}" for i in range(100)], Collector())
    fake.always = Reply(401)
    with pytest.raises(AuthenticationFailed) as refused:
        await client.check_orders(["A1"], Collector())
    texts += [str(outage.value), repr(outage.value), str(refused.value), repr(refused.value)]

    texts.append(caplog.text)
    texts += [repr(vars(record)) for record in caplog.records]
    assert any("request.retry" in text for text in texts)  # the logs were really captured
    for text in texts:
        assert CCV_KEY not in text
        assert token not in text


# --- a pass over many orders --------------------------------------------------------------


async def test_pass_reports_every_order(fake: FakeCCV, session: aiohttp.ClientSession) -> None:
    ids = [f"O{i}" for i in range(60)]
    fake.orders.update({order_id: "New" for order_id in ids[:50]})
    emit = Collector()
    await CCVClient(ccv_config(fake.base_url), session, secrets=()).check_orders(ids, emit)
    assert sorted(o.key.order_id for o in emit.seen) == sorted(ids)
    assert sum(o.outcome is Outcome.OK for o in emit.seen) == 50
    assert sum(o.outcome is Outcome.NOT_FOUND for o in emit.seen) == 10


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_concurrency_never_above_config(
    fake: FakeCCV, session: aiohttp.ClientSession, concurrency: int
) -> None:
    ids = [f"O{i}" for i in range(40)]
    fake.orders.update(dict.fromkeys(ids, "New"))
    fake.delay_s = 0.01
    emit = Collector()
    client = CCVClient(ccv_config(fake.base_url, concurrency=concurrency), session, secrets=())
    await client.check_orders(ids, emit)
    assert len(emit.seen) == 40
    assert fake.max_in_flight == concurrency


async def test_circuit_breaker_stops_an_outage(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    fake.always = Reply(503)
    retry = RetryConfig(attempts=1, backoff_s=0.001, max_backoff_s=0.01)
    client = CCVClient(ccv_config(fake.base_url, concurrency=4, retry=retry), session, secrets=())
    emit = Collector()

    with pytest.raises(SourceUnavailable, match="consecutive failures"):
        await client.check_orders((f"O{i}" for i in range(20_000)), emit)

    # max(5, 2*4) failed checks, plus those in flight, each 1 + 1 attempts.
    assert len(fake.requests) <= (8 + 4) * 2
    assert len(emit.seen) < 8
    assert worker_tasks() == set()


async def test_the_breaker_says_once_that_it_opened_whatever_checks_are_in_flight(
    fake: FakeCCV, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # 15 failures in a row, then 8 checks in flight fail together: each one past the limit
    # (max(5, 2 * 8) = 16) found the breaker open, and each logged it (8 lines of one opening).
    fake.always = Reply(503)
    late = {f"O{i}" for i in range(15, 23)}
    fake.answer_late = lambda seen: seen.order_id in late
    retry = RetryConfig(attempts=0)
    client = CCVClient(ccv_config(fake.base_url, concurrency=8, retry=retry), session, secrets=())
    checks = asyncio.ensure_future(client.check_orders([f"O{i}" for i in range(100)], Collector()))
    await fake.wait_until(lambda: len(fake.requests) == 23)
    fake.release.set()
    with pytest.raises(SourceUnavailable, match="consecutive failures"):
        await checks
    [line] = [r for r in caplog.records if r.getMessage() == "ccv.circuit_open"]
    assert line.fields["consecutive_failures"] == 16  # type: ignore[attr-defined]
    assert len(fake.requests) == 23


async def test_scattered_failures_do_not_open_the_breaker(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    ids = [f"O{i}" for i in range(30)]
    fake.orders.update(dict.fromkeys(ids, "New"))
    fake.replies.update({order_id: Reply(503) for order_id in ids[::3]})
    emit = Collector()
    client = CCVClient(ccv_config(fake.base_url, concurrency=1), session, secrets=())
    await client.check_orders(ids, emit)
    assert [o.reason for o in emit.seen].count("http_503") == 10
    assert len(emit.seen) == 30


async def test_ids_are_pulled_lazily_and_emit_is_backpressure(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    concurrency = 4
    pulled = 0

    def ids() -> Iterator[str]:
        nonlocal pulled
        for i in range(500):
            pulled += 1
            yield f"O{i}"

    fake.orders.update({f"O{i}": "New" for i in range(500)})
    release = asyncio.Event()
    all_blocked = asyncio.Event()
    blocked = 0
    seen: list[Observation] = []

    async def emit(observation: Observation) -> None:
        nonlocal blocked
        if len(seen) >= 20 and not release.is_set():
            blocked += 1
            if blocked == concurrency:
                all_blocked.set()
            await release.wait()
        seen.append(observation)

    client = CCVClient(ccv_config(fake.base_url, concurrency=concurrency), session, secrets=())
    task = asyncio.ensure_future(client.check_orders(ids(), emit))
    await asyncio.wait_for(all_blocked.wait(), 5)
    # Every worker waits in emit, holding one order each: nothing more was read or asked.
    assert pulled == 20 + concurrency
    assert len(fake.requests) == 20 + concurrency
    release.set()
    await asyncio.wait_for(task, 10)
    assert len(seen) == 500


async def test_emit_exception_stops_the_pass(fake: FakeCCV, session: aiohttp.ClientSession) -> None:
    ids = [f"O{i}" for i in range(100)]
    fake.orders.update(dict.fromkeys(ids, "New"))
    emitted = 0

    async def emit(observation: Observation) -> None:
        nonlocal emitted
        emitted += 1
        if emitted == 5:
            raise RuntimeError("store is full")

    client = CCVClient(ccv_config(fake.base_url, concurrency=4), session, secrets=())
    with pytest.raises(RuntimeError, match="store is full"):
        await client.check_orders(ids, emit)
    assert len(fake.requests) < 20
    assert worker_tasks() == set()


async def test_cancelling_the_pass_cancels_workers(
    fake: FakeCCV, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    fake.orders.update({f"O{i}": "New" for i in range(100)})

    async def emit(observation: Observation) -> None:
        # After the first answer every request hangs at the provider.
        if fake.hold is None:
            fake.hold = asyncio.Event()

    client = CCVClient(ccv_config(fake.base_url, concurrency=4), session, secrets=())
    task = asyncio.ensure_future(client.check_orders([f"O{i}" for i in range(100)], emit))
    await fake.wait_until(lambda: fake.in_flight == 4)
    assert worker_tasks() != set()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert worker_tasks() == set()
    assert len(fake.requests) == 1 + 4
    assert not [r for r in caplog.records if r.name == "asyncio"]


# --- shared request policy ----------------------------------------------------------------


NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 120 ", 120.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("soon", None),
        ("-5", None),
        # Digits to str.isdigit(), not to HTTP (nor to float()): ignored, never a crash.
        ("²", None),
        ("³", None),
        ("１０", None),
        ("٣", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_retry_delay_doubles_with_jitter_and_caps() -> None:
    retry = RetryConfig(attempts=5, backoff_s=0.5, max_backoff_s=3.0)
    assert retry_delay(retry, 0, None, jitter=lambda low, high: 1.0) == 0.5
    assert retry_delay(retry, 2, None, jitter=lambda low, high: 1.0) == 2.0
    assert retry_delay(retry, 2, None, jitter=lambda low, high: high) == pytest.approx(2.4)
    assert retry_delay(retry, 2, None, jitter=lambda low, high: low) == pytest.approx(1.6)
    assert retry_delay(retry, 9, None, jitter=lambda low, high: 1.0) == 3.0
    assert retry_delay(retry, 0, 2.0) == 2.0
    assert retry_delay(retry, 0, 60.0) == 3.0
    delays = {retry_delay(retry, 1, None) for _ in range(50)}
    assert all(0.8 <= delay <= 1.2 for delay in delays) and len(delays) > 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Two answers in one: taking the last would guess an end state never asked again.
        ('{"orderStatus": "New", "orderStatus": "Completed"}', None),
        ('{"externalReference": "a", "orderStatus": "New", "orderStatus": "New"}', None),
        # A key written with escapes is the same key; so is the reference twice.
        ('{"orderStatus": "New", "order\\u0053tatus": "Completed"}', None),
        ('{"orderStatus": "New", "externalReference": "A", "externalReference": "B"}', None),
        # The word in a value is no second key.
        ('{"orderStatus": "New", "note": "see \\"orderStatus\\""}', "New"),
        # Another key twice is no second answer, nested or not, escapes in the body or not.
        ('{"orderStatus": "Screening", "a": 1, "a": 2}', "Screening"),
        ('{"orderStatus": "Canceled", "x": "\\u00e9", "o": {"k": 1, "k": 1}}', "Canceled"),
        ('{"orderStatus": "Canceled", "x": "\\u00e9", "k": 1, "k": 2}', "Canceled"),
        ('{"orderStatus": "New", "o": {"orderStatus": "A", "orderStatus": "B"}}', "New"),
        # The top level's own repeat, after a nested object.
        ('{"o": {"k": 1}, "orderStatus": "New", "orderStatus": "Completed"}', None),
    ],
    ids=[
        "two-statuses",
        "same-status-twice",
        "escaped-key",
        "two-references",
        "word-in-a-value",
        "another-key-twice",
        "nested-key-twice-with-an-escape",
        "another-key-twice-with-an-escape",
        "nested-status-twice",
        "status-twice-after-a-nested-object",
    ],
)
async def test_a_status_answer_naming_a_key_twice_fails_that_order(
    fake: FakeCCV, session: aiohttp.ClientSession, body: str, expected: str | None
) -> None:
    fake.replies["A1"] = Reply(200, body, "application/json")
    seen = await CCVClient(ccv_config(fake.base_url), session, secrets=()).fetch("A1")
    if expected is None:
        assert seen == Observation(key("A1"), Outcome.FAILED, reason="protocol", asked=STAMPED)
    else:
        assert seen == Observation(key("A1"), Outcome.OK, expected, asked=STAMPED)


async def test_a_request_still_waiting_for_its_turn_when_the_stop_begins_is_not_made(
    fake: FakeCCV, session: aiohttp.ClientSession
) -> None:
    # Its account's one request in flight holds the gate; the stop begins meanwhile.
    gate, halt = asyncio.Semaphore(1), asyncio.Event()
    async with gate:
        call = asyncio.ensure_future(
            request(
                session,
                "GET",
                URL(fake.base_url).with_path("/api/ordercompletion/reseller/order/A1/status"),
                headers={},
                timeout=aiohttp.ClientTimeout(total=2),
                gate=gate,
                retry=RetryConfig(attempts=2, backoff_s=0.001, max_backoff_s=0.01),
                max_body=MAX_BODY_BYTES,
                log=logging.getLogger("test"),
                halt=halt,
            )
        )
        halt.set()
    # Not a failed request (no word, no observation): the stop kept it back.
    with pytest.raises(Stopping):
        await call
    assert fake.requests == []
