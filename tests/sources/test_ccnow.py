"""CCNow answer parser, and the client against a loopback fake of the order receiver."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from reconciler.config import RetryConfig, Secret
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_answer import Answer, EmptyAnswer, OrderLine, parse_answer
from reconciler.sources.errors import (
    AuthenticationFailed,
    ProtocolError,
    SourceError,
    SourceUnavailable,
)
from tests.fake_providers import (
    CCNOW_PASSWORD,
    STAMPED,
    FakeCCNow,
    Reply,
    ccnow_config,
    html_page,
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCNow]:
    async with FakeCCNow() as fake:
        yield fake


def ok(order_id: str, status: str) -> Observation:
    return Observation(
        OrderKey("ccnow", "default", order_id), Outcome.OK, status=status, asked=STAMPED
    )


def failed(order_id: str, reason: str) -> Observation:
    return Observation(
        OrderKey("ccnow", "default", order_id), Outcome.FAILED, reason=reason, asked=STAMPED
    )


class Collector:
    """An emit callback that keeps what it got."""

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    async def __call__(self, observation: Observation) -> None:
        self.seen.append(observation)

    def by_id(self) -> dict[str, Observation]:
        return {o.key.order_id: o for o in self.seen}


def order_ids(count: int) -> list[str]:
    return [f"{400 + i // 100:03d}-{i % 100:02d}-{1000 + i:04d}" for i in range(count)]


# --- parse_answer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        (
            "396-10-1142 pending\n397-10-1159 pending\n",
            Answer((OrderLine("396-10-1142", "pending"), OrderLine("397-10-1159", "pending")), ()),
        ),
        ("message no_pending_orders\n", Answer((), ("no_pending_orders",))),
        (
            "\r\n  396101142 mark_shipped \r\n\r\n\t397-10-1159   on  hold\r\n\n",
            Answer(
                # an undocumented status keeps its inner blanks (verbatim), its ends trimmed
                (OrderLine("396-10-1142", "mark_shipped"), OrderLine("397-10-1159", "on  hold")),
                (),
            ),
        ),
        (
            b"\xef\xbb\xbf396-10-1142 brand_new-status",
            Answer((OrderLine("396-10-1142", "brand_new-status"),), ()),
        ),
        (
            "396-10-1142 error unknown order\n397-10-1159 NOT_FOUND\n398-10-1000 invalid",
            Answer(
                (
                    OrderLine("396-10-1142", None, "error unknown order"),
                    OrderLine("397-10-1159", None, "NOT_FOUND", not_found=True),
                    OrderLine("398-10-1000", None, "invalid"),
                ),
                (),
            ),
        ),
        ("396-10-1142 error_message no such order", None),
        ("396-10-1142 unknown", None),
    ],
)
def test_parse_answer_accepts_the_protocol(body: str | bytes, answer: Answer | None) -> None:
    parsed = parse_answer(body)
    if answer is not None:
        assert parsed == answer
    else:
        (line,) = parsed.orders
        assert line.status is None


@pytest.mark.parametrize(
    ("body", "error", "text"),
    [
        ("error_message system down for maintenance\n", SourceUnavailable, None),
        ("396-10-1142 pending\nerror_message system down for maintenance", SourceUnavailable, None),
        ("error_message invalid login", AuthenticationFailed, "error_message: invalid login"),
        ("error_message Bad Password", AuthenticationFailed, None),
        ("error_message unknown client id", AuthenticationFailed, None),
        ("ERROR_MESSAGE not authorized", AuthenticationFailed, None),
        ("error_message\r\n", SourceUnavailable, "error_message"),
        ("message \t\r\n", SourceUnavailable, "message"),
        ("", EmptyAnswer, "empty answer"),
        ("\r\n   \n\t\n", EmptyAnswer, "empty answer"),
        ("<!DOCTYPE html><html><body>Login</body></html>", ProtocolError, "html page"),
        ("  \n<html>", ProtocolError, "html page"),
        ('{"orders": []}', ProtocolError, None),
        ("pending", ProtocolError, None),
        ("396-10-1142", ProtocolError, None),
        ("3961011420 pending", ProtocolError, None),
        ("396-10-1142 pending\nOK", ProtocolError, None),
    ],
)
def test_parse_answer_refuses_everything_else(
    body: str | bytes, error: type[SourceError], text: str | None
) -> None:
    with pytest.raises(SourceError) as caught:
        parse_answer(body)
    assert type(caught.value) is error
    if text is not None:
        assert str(caught.value) == text


def test_a_line_that_is_not_utf8_is_that_orders_failure_alone() -> None:
    # An old CGI's latin-1 byte in one order's line must not fail the account's other orders.
    answer = parse_answer(b"396-10-1142 p\xe9nding\n397-10-1159 pending\n")
    assert [(o.order_id, o.status, o.error) for o in answer.orders] == [
        ("396-10-1142", None, "unreadable status"),
        ("397-10-1159", "pending", None),
    ]
    # In an error, the byte is shown as U+FFFD: the text must be writable to logs and events.
    with pytest.raises(SourceUnavailable) as caught:
        parse_answer(b"error_message syst\xe8me en panne\n")
    assert str(caught.value) == "error_message: syst\ufffdme en panne"
    line = parse_answer(b"396-10-1142 error_message base occup\xe9e\n").orders[0]
    assert line.error is not None and line.error.encode("utf-8")


def test_maintenance_text_is_the_reason() -> None:
    with pytest.raises(SourceUnavailable) as caught:
        parse_answer("error_message system down for maintenance")
    assert str(caught.value) == "error_message: system down for maintenance"


# --- pending list -------------------------------------------------------------------------


async def test_pending_list(fake: FakeCCNow, session: aiohttp.ClientSession) -> None:
    fake.orders.update(
        {"396-10-1142": "pending", "397-10-1159": "pending", "398-10-1000": "completed"}
    )
    client = CCNowClient(ccnow_config(fake.url), session)
    assert await client.pending_list() == [
        ok("396-10-1142", "pending"),
        ok("397-10-1159", "pending"),
    ]
    (seen,) = fake.requests
    assert not any(name.startswith(("x_orderid", "x_action")) for name in seen.form)


async def test_pending_lines_without_a_status_are_left_out_with_a_warning(
    fake: FakeCCNow, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    fake.always = Reply(
        200,
        b"396-10-1141 pending\n"
        b"396-10-1142 pend\xe9\n"  # latin-1
        b"396-10-1143 pending\n396-10-1143 mark_shipped\n"  # two lines that disagree
        b"396-10-1144 pend!ng\n",
    )
    client = CCNowClient(ccnow_config(fake.url), session)
    with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
        listed = await client.pending_list()
    assert listed == [ok("396-10-1141", "pending")]
    (record,) = [r for r in caplog.records if r.msg == "ccnow.pending_lines_unreadable"]
    assert record.fields["count"] == 3  # type: ignore[attr-defined]


async def test_no_pending_orders_is_an_empty_list(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    client = CCNowClient(ccnow_config(fake.url), session)
    assert await client.pending_list() == []


async def test_pending_list_ids_without_hyphens_and_crlf(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    fake.orders.update({"396-10-1142": "pending", "397-10-1159": "pending"})
    fake.hyphenless = True
    fake.line_end = "\r\n"
    fake.blank_lines = True
    client = CCNowClient(ccnow_config(fake.url), session)
    assert await client.pending_list() == [
        ok("396-10-1142", "pending"),
        ok("397-10-1159", "pending"),
    ]


@pytest.mark.parametrize(
    ("reply", "error", "text"),
    [
        (Reply(200, "error_message system down for maintenance\n"), SourceUnavailable, None),
        (html_page(), ProtocolError, "html page"),
        # a page without a final line end is a page, not an answer cut short (no retry)
        (Reply(200, "<html><body>Bad gateway</body></html>"), ProtocolError, "html page"),
        (Reply(200, "\ufeff  <!DOCTYPE html><html>", "text/html"), ProtocolError, "html page"),
        (Reply(200, "Service Unavailable\n", "text/html"), ProtocolError, None),
        (Reply(200, ""), EmptyAnswer, "empty answer"),
        (Reply(200, "OK\n"), ProtocolError, None),
        (Reply(401), AuthenticationFailed, "http 401"),
        (Reply(403), AuthenticationFailed, "http 403"),
        (Reply(404), ProtocolError, "http 404"),
    ],
)
async def test_pending_list_failures(
    fake: FakeCCNow,
    session: aiohttp.ClientSession,
    reply: Reply,
    error: type[SourceError],
    text: str | None,
) -> None:
    fake.orders["396-10-1142"] = "pending"
    fake.always = reply
    client = CCNowClient(ccnow_config(fake.url), session)
    with pytest.raises(SourceError) as caught:
        await client.pending_list()
    assert type(caught.value) is error
    if text is not None:
        assert str(caught.value) == text
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_are_retried_then_unavailable(
    fake: FakeCCNow, session: aiohttp.ClientSession, status: int
) -> None:
    fake.always = Reply(status)
    retry = RetryConfig(attempts=3, backoff_s=0.001, max_backoff_s=0.01)
    client = CCNowClient(ccnow_config(fake.url, retry=retry), session)
    with pytest.raises(SourceUnavailable) as caught:
        await client.pending_list()
    assert str(caught.value) == f"http {status}"
    assert len(fake.requests) == 1 + 3


async def test_server_error_then_answer(fake: FakeCCNow, session: aiohttp.ClientSession) -> None:
    fake.orders["396-10-1142"] = "pending"
    fake.script = [Reply(502, headers={"Retry-After": "0"})]
    client = CCNowClient(ccnow_config(fake.url), session)
    assert await client.pending_list() == [ok("396-10-1142", "pending")]
    assert len(fake.requests) == 2


async def test_timeout_is_unavailable(fake: FakeCCNow, session: aiohttp.ClientSession) -> None:
    fake.delay_s = 5.0
    retry = RetryConfig(attempts=1, backoff_s=0.001, max_backoff_s=0.01)
    client = CCNowClient(ccnow_config(fake.url, timeout_s=0.2, retry=retry), session)
    with pytest.raises(SourceUnavailable, match=r"^timeout$"):
        await client.pending_list()
    assert len(fake.requests) == 2


async def test_store_id_is_sent_only_when_set(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    await CCNowClient(ccnow_config(fake.url), session).pending_list()
    await CCNowClient(ccnow_config(fake.url, store_id="linked7"), session).pending_list()
    without, with_store = fake.requests
    assert "x_storeid" not in without.form
    assert with_store.form["x_storeid"] == "linked7"
    assert with_store.form["x_clientid"] == "amylove"
    assert with_store.form["x_password"] == CCNOW_PASSWORD


# --- queries ------------------------------------------------------------------------------


async def test_query_in_batches(fake: FakeCCNow, session: aiohttp.ClientSession) -> None:
    ids = order_ids(60)
    fake.orders.update(dict.fromkeys(ids, "processing"))
    emit = Collector()
    client = CCNowClient(ccnow_config(fake.url, batch_size=25), session)

    await client.query(ids, emit)

    assert sorted(fake.batch_sizes) == [10, 25, 25]
    assert fake.max_batch == 25
    assert sorted(emit.seen, key=lambda o: o.key.order_id) == [ok(i, "processing") for i in ids]
    first = fake.requests[0].form
    assert first["x_orderid_1"] == ids[0] and first["x_action_1"] == "query"
    assert first["x_action_25"] == "query" and "x_orderid_26" not in first


async def test_query_ids_without_hyphens_are_normalized(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    fake.orders.update({"396-10-1142": "pending", "397-10-1159": "canceled"})
    fake.hyphenless = True
    emit = Collector()
    await CCNowClient(ccnow_config(fake.url), session).query(["396101142", "397-10-1159"], emit)
    assert emit.seen == [ok("396-10-1142", "pending"), ok("397-10-1159", "canceled")]
    assert fake.requests[0].form["x_orderid_1"] == "396-10-1142"


async def test_query_lines_are_matched_by_id(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    ids = order_ids(20)
    statuses = ["received", "pending", "completed", "refunded"]
    fake.orders.update({order_id: statuses[n % 4] for n, order_id in enumerate(ids)})
    fake.shuffle = True
    fake.line_end = "\r\n"
    fake.blank_lines = True
    emit = Collector()
    await CCNowClient(ccnow_config(fake.url), session).query(ids, emit)
    assert emit.seen == [ok(order_id, fake.orders[order_id]) for order_id in ids]


async def test_missing_and_erroneous_orders_fail_alone(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    ids = order_ids(5)
    fake.orders.update(dict.fromkeys(ids, "pending"))
    fake.orders[ids[4]] = "escalated_review"  # not a documented word: kept as it is
    fake.omit.add(ids[1])
    fake.order_errors.add(ids[2])
    emit = Collector()
    await CCNowClient(ccnow_config(fake.url), session).query(ids, emit)
    assert emit.by_id() == {
        ids[0]: ok(ids[0], "pending"),
        ids[1]: failed(ids[1], "missing"),  # asked again alone (brief n53), left out again
        ids[2]: failed(ids[2], "order_error"),
        ids[3]: ok(ids[3], "pending"),
        ids[4]: ok(ids[4], "escalated_review"),
    }
    assert fake.batch_sizes == [5, 1]


async def test_unasked_and_duplicate_lines(fake: FakeCCNow, session: aiohttp.ClientSession) -> None:
    ids = order_ids(3)
    fake.orders.update(dict.fromkeys(ids, "pending"))
    fake.extra_lines = [
        "999-99-9999 completed",  # not asked: ignored
        f"{ids[0]} pending",  # the same again: fine
        f"{ids[1]} completed",  # disagrees with the first line for this id
    ]
    emit = Collector()
    await CCNowClient(ccnow_config(fake.url), session).query(ids, emit)
    assert emit.seen == [ok(ids[0], "pending"), failed(ids[1], "protocol"), ok(ids[2], "pending")]


async def test_invalid_ids_are_not_sent(fake: FakeCCNow, session: aiohttp.ClientSession) -> None:
    fake.orders["396-10-1142"] = "pending"
    emit = Collector()
    await CCNowClient(ccnow_config(fake.url), session).query(
        ["396-10-1142", "12345", "396-10-1142&x_action_1=ship"], emit
    )
    assert emit.by_id() == {
        "396-10-1142": ok("396-10-1142", "pending"),
        "12345": failed("12345", "invalid_id"),
        "396-10-1142&x_action_1=ship": failed("396-10-1142&x_action_1=ship", "invalid_id"),
    }
    (seen,) = fake.requests
    assert seen.form["x_action_1"] == "query" and "x_orderid_2" not in seen.form


async def test_query_concurrency_is_bounded(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    ids = order_ids(50)
    fake.orders.update(dict.fromkeys(ids, "pending"))
    fake.delay_s = 0.01
    emit = Collector()
    client = CCNowClient(ccnow_config(fake.url, batch_size=5, concurrency=3), session)
    await client.query(ids, emit)
    assert len(fake.batch_sizes) == 10
    assert fake.max_in_flight == 3
    assert len(emit.seen) == 50


async def test_wrong_password_costs_one_post(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    ids = order_ids(100)
    config = ccnow_config(fake.url, password=Secret("wrong"), batch_size=10, concurrency=4)
    emit = Collector()
    with pytest.raises(AuthenticationFailed, match="invalid login"):
        await CCNowClient(config, session).query(ids, emit)
    assert len(fake.requests) == 1
    assert emit.seen == []


async def test_failing_batch_raises_and_earlier_batches_stand(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    ids = order_ids(60)
    fake.orders.update(dict.fromkeys(ids, "pending"))
    seen: list[Observation] = []

    async def emit(observation: Observation) -> None:
        seen.append(observation)
        fake.always = Reply(200, "error_message system down for maintenance\n")

    client = CCNowClient(ccnow_config(fake.url, batch_size=25, concurrency=1), session)
    with pytest.raises(SourceUnavailable, match="maintenance"):
        await client.query(ids, emit)
    assert seen == [ok(order_id, "pending") for order_id in ids[:25]]
    assert len(fake.requests) == 2


# --- secrets ------------------------------------------------------------------------------


async def test_password_never_reaches_logs_or_exceptions(
    fake: FakeCCNow, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ids = order_ids(3)
    fake.orders.update(dict.fromkeys(ids, "pending"))
    fake.extra_lines = ["999-99-9999 completed"]
    # Answers are waited for as long as a loaded machine needs (with 0.2 s they timed out
    # there, and the answers' texts went unchecked); the slow answer alone is given up on.
    client = CCNowClient(ccnow_config(fake.url, timeout_s=30.0), session)
    impatient = CCNowClient(ccnow_config(fake.url, timeout_s=0.2), session)
    texts: list[str] = []

    await client.query(ids, Collector())
    replies = [
        (Reply(200, f"error_message wrong password {CCNOW_PASSWORD} for amylove\n"), client),
        (Reply(200, f"error_message cannot parse x_password={CCNOW_PASSWORD}\n"), client),
        (Reply(200, f"{CCNOW_PASSWORD}\n"), client),
        (Reply(500), client),
        (Reply(404), client),
        (Reply(200, delay_s=5.0), impatient),
    ]
    for reply, asking in replies:
        fake.always = reply
        with pytest.raises(SourceError) as caught:
            await asking.query(ids, Collector())
        texts += [str(caught.value), repr(caught.value)]
    wrong = CCNowClient(ccnow_config(fake.url, password=Secret("x" + CCNOW_PASSWORD)), session)
    fake.always = None
    with pytest.raises(AuthenticationFailed) as refused:
        await wrong.pending_list()
    texts += [str(refused.value), repr(refused.value), caplog.text]
    texts += [repr(vars(record)) for record in caplog.records]

    assert any("ccnow.unasked_ids" in text for text in texts)  # the logs were really captured
    assert any("error_message: wrong password *** for amylove" in text for text in texts)
    assert fake.requests[0].form["x_password"] == CCNOW_PASSWORD
    for text in texts:
        assert CCNOW_PASSWORD not in text


# --- answers the documents leave open (issue 10) --------------------------------------------


def not_found(order_id: str) -> Observation:
    return Observation(OrderKey("ccnow", "default", order_id), Outcome.NOT_FOUND, asked=STAMPED)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("message account_locked\n", "message: account_locked"),
        ("message temporarily unavailable\n", "message: temporarily unavailable"),
        ("396-10-1142 pending\nmessage list truncated\n", "message: list truncated"),
    ],
)
def test_an_unknown_message_is_a_failure_naming_its_words(body: str, text: str) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        parse_answer(body)
    assert str(caught.value) == text


async def test_pending_list_with_an_unknown_message_is_not_empty(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    fake.always = Reply(200, "message account_locked\n")
    with pytest.raises(SourceError, match=r"^message: account_locked$"):
        await CCNowClient(ccnow_config(fake.url), session).pending_list()


def test_an_order_ccnow_does_not_know_is_not_found() -> None:
    answer = parse_answer("396-10-1142 error_message unknown order\n397-10-1159 not_found\n")
    assert answer.orders == (
        OrderLine("396-10-1142", None, "error_message unknown order", not_found=True),
        OrderLine("397-10-1159", None, "not_found", not_found=True),
    )


def test_any_other_per_order_error_fails_that_order_and_says_nothing_about_it() -> None:
    # A busy database is not a fact about the order: reported as not found, it would raise
    # `order.not_found` at once and put off its next check for a day.
    answer = parse_answer(
        "396-10-1142 error_message database busy, try again later\n"
        "397-10-1159 error_message No such order\n"
        "398-10-1160 error_message unknown error, try again later\n"
        "399-10-1161 error_message no such table: orders\n"
    )
    assert answer.orders == (
        OrderLine("396-10-1142", None, "error_message database busy, try again later"),
        OrderLine("397-10-1159", None, "error_message No such order", not_found=True),
        OrderLine("398-10-1160", None, "error_message unknown error, try again later"),
        OrderLine("399-10-1161", None, "error_message no such table: orders"),
    )


async def test_query_of_an_unknown_order_is_not_found_not_failed(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    fake.orders["396-10-1142"] = "pending"
    emit = Collector()
    await CCNowClient(ccnow_config(fake.url), session).query(["396-10-1142", "999-00-0001"], emit)
    assert emit.seen == [ok("396-10-1142", "pending"), not_found("999-00-0001")]


async def test_order_lines_labelled_html_are_read_by_their_body(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    fake.always = Reply(200, "396-10-1142 pending\n397-10-1159 pending\n", "text/html")
    client = CCNowClient(ccnow_config(fake.url), session)
    assert await client.pending_list() == [
        ok("396-10-1142", "pending"),
        ok("397-10-1159", "pending"),
    ]


async def test_bare_cr_line_ends_keep_every_order(
    fake: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    ids = order_ids(3)
    fake.orders.update(dict.fromkeys(ids, "pending"))
    fake.line_end = "\r"
    client = CCNowClient(ccnow_config(fake.url), session)
    assert await client.pending_list() == [ok(order_id, "pending") for order_id in ids]


@pytest.mark.parametrize(
    "status", ["on hold", "awaiting  stock review", "hold for stock", "pending review"]
)
async def test_a_status_of_several_words_is_kept_whole(
    fake: FakeCCNow, session: aiohttp.ClientSession, status: str
) -> None:
    fake.orders["396-10-1142"] = status
    emit = Collector()
    await CCNowClient(ccnow_config(fake.url), session).query(["396-10-1142"], emit)
    assert emit.seen == [ok("396-10-1142", status)]  # verbatim: `awaiting  stock review`


@pytest.mark.parametrize(
    "body",
    [
        "１２３-４５-６７８９ pending\n",  # fullwidth digits
        "٣٩٦-١٠-١١٤٢ pending\n",  # Arabic-Indic digits
        "396-10-1142\u00a0pending\n",  # a no-break space is not a separator
    ],
)
def test_only_ascii_digits_and_blanks_make_an_order_line(body: str) -> None:
    with pytest.raises(ProtocolError):
        parse_answer(body)


@pytest.mark.parametrize(
    "status",
    [
        "pend!ng",
        "p" * 65,
        "pending\u2003review",
        "on\u00a0hold",
        "pending\x00",
        "en_attente_\u00e9",
    ],
)
async def test_an_unreadable_status_fails_that_order_alone(
    fake: FakeCCNow, session: aiohttp.ClientSession, status: str
) -> None:
    ids = order_ids(3)
    fake.orders.update(dict.fromkeys(ids, "processing"))
    fake.orders[ids[1]] = status
    emit = Collector()
    await CCNowClient(ccnow_config(fake.url), session).query(ids, emit)
    assert emit.seen == [
        ok(ids[0], "processing"),
        failed(ids[1], "order_error"),
        ok(ids[2], "processing"),
    ]


class RawServer:
    """A loopback HTTP server that writes scripted raw responses, one per connection, and
    closes: close-delimited bodies, wrong Content-Length, whatever a broken network leaves."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses = responses
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/cgi-local/oapi_receive.cgi"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        response = self.responses[min(self.requests, len(self.responses) - 1)]
        self.requests += 1
        writer.write(response)
        await writer.drain()
        writer.close()


def close_delimited(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + body


def with_length(body: bytes, length: int) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n\r\n"
    return head.encode() + body


def chunked(body: bytes, *, end: bool = True) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (len(body), body)
    return head + chunk + (b"0\r\n\r\n" if end else b"")


@pytest.mark.parametrize(
    "broken",
    [
        close_delimited(b"222-22-2222 pend"),  # cut mid-word
        close_delimited(b"111-11-1111 pending\n222-22-2222 pending"),  # the last line end lost
        with_length(b"222-22-2222 pending\n", 64),  # shorter than its header says
        chunked(b"111-11-1111 pending\n222-22-2222 pend", end=False),  # its last chunk lost
        # Ended cleanly mid-line: a CGI that died, its web server closing the chunked answer.
        chunked(b"111-11-1111 pending\n222-22-2222 pend"),
    ],
)
async def test_a_cut_answer_is_retried_like_a_dropped_connection(
    session: aiohttp.ClientSession, broken: bytes
) -> None:
    whole = close_delimited(b"111-11-1111 pending\n222-22-2222 pending\n")
    async with RawServer([broken, whole]) as server:
        emit = Collector()
        client = CCNowClient(ccnow_config(server.url), session)
        await client.query(["111-11-1111", "222-22-2222"], emit)
        assert emit.seen == [ok("111-11-1111", "pending"), ok("222-22-2222", "pending")]
        assert server.requests == 2


async def test_an_answer_of_its_content_length_needs_no_final_line_end(
    session: aiohttp.ClientSession,
) -> None:
    # Its length says where it ends, and aiohttp raises on one that ends short (a chunked one
    # still needs its line end: see the cut answers above).
    whole = with_length(b"111-11-1111 pending\n222-22-2222 pending", 39)
    async with RawServer([whole]) as server:
        emit = Collector()
        client = CCNowClient(ccnow_config(server.url), session)
        await client.query(["111-11-1111", "222-22-2222"], emit)
        assert emit.seen == [ok("111-11-1111", "pending"), ok("222-22-2222", "pending")]
        assert server.requests == 1


async def test_an_answer_cut_on_every_try_is_a_transport_failure(
    session: aiohttp.ClientSession,
) -> None:
    async with RawServer([close_delimited(b"222-22-2222 pend")]) as server:
        emit = Collector()
        client = CCNowClient(ccnow_config(server.url), session)
        with pytest.raises(SourceUnavailable, match=r"^truncated answer$"):
            await client.query(["222-22-2222"], emit)
        assert emit.seen == []
        assert server.requests == 1 + ccnow_config(server.url).retry.attempts


@pytest.mark.parametrize("value", ["²", "³", "١", "１０"])
async def test_a_retry_after_of_other_digits_is_ignored_not_a_crash(
    fake: FakeCCNow, session: aiohttp.ClientSession, value: str
) -> None:
    fake.orders["396-10-1142"] = "pending"
    fake.script = [Reply(503, headers={"Retry-After": value})]
    client = CCNowClient(ccnow_config(fake.url), session)
    assert await client.pending_list() == [ok("396-10-1142", "pending")]
    assert len(fake.requests) == 2
