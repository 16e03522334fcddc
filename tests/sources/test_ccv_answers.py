"""CCV status answers that are no answer, or not as sent: a key named twice in UTF-16 or
UTF-32, `NaN`, a coding aiohttp leaves undecoded (`x-gzip`, `gzip, gzip`), a reference with
blanks around it."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import Observation, OrderKey, Outcome, reference_problem
from reconciler.sources.ccv import MAX_BODY_BYTES, CCVClient
from reconciler.sources.errors import ProtocolError, SourceUnavailable
from reconciler.writes.submit_ids import order_id_from
from tests.conftest import call_cli, read_events, write_config
from tests.fake_providers import STAMPED, FakeCCV, Reply, ccv_config


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # As the runtime's (http_session): every coding is left to read_body.
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def key(order_id: str) -> OrderKey:
    return OrderKey("ccv", "default", order_id)


PROTOCOL = Observation(key("A1"), Outcome.FAILED, reason="protocol", asked=STAMPED)


async def answered(fake: FakeCCV, session: aiohttp.ClientSession, reply: Reply) -> Observation:
    fake.replies["A1"] = reply
    return await CCVClient(ccv_config(fake.base_url), session, secrets=()).fetch("A1")


# --- a key named twice, in UTF-16 or UTF-32 ----------------------------------------------------

ENCODINGS = {
    "utf-16-bom": lambda text: text.encode("utf-16"),
    "utf-16-le": lambda text: text.encode("utf-16-le"),
    "utf-16-be": lambda text: text.encode("utf-16-be"),
    "utf-16-be-bom": lambda text: ("\ufeff" + text).encode("utf-16-be"),
    "utf-32-bom": lambda text: text.encode("utf-32"),
    "utf-32-le": lambda text: text.encode("utf-32-le"),
    "utf-32-be": lambda text: text.encode("utf-32-be"),
    "utf-32-be-bom": lambda text: ("\ufeff" + text).encode("utf-32-be"),
}

TWICE = {
    "end-state-last": '{"orderStatus":"New","orderStatus":"Completed"}',
    "end-state-first": '{"orderStatus":"Completed","orderStatus":"New"}',
    "escaped-key": '{"orderStatus":"New","order\\u0053tatus":"Completed"}',
    "two-references": '{"orderStatus":"New","externalReference":"A","externalReference":"B"}',
}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("body", TWICE)
async def test_a_key_named_twice_in_utf16_or_utf32_fails_that_order(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession, encoding: str, body: str
) -> None:
    # Before, the last value won: `order.discovered` Completed, an end state never asked again.
    reply = Reply(200, ENCODINGS[encoding](TWICE[body]), "application/json")
    assert await answered(fake_ccv, session, reply) == PROTOCOL


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_a_clean_answer_in_utf16_or_utf32_is_taken(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession, encoding: str
) -> None:
    text = '{"orderStatus":"Completed","externalReference":"R\\u00e9-7","o":{"k":1,"k":2}}'
    reply = Reply(200, ENCODINGS[encoding](text), "application/json")
    assert await answered(fake_ccv, session, reply) == Observation(
        key("A1"), Outcome.OK, "Completed", "Ré-7", asked=STAMPED
    )


async def test_no_end_state_comes_of_a_utf16_answer_naming_its_status_twice(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    body = '{"orderStatus":"New","orderStatus":"Completed"}'.encode("utf-16")
    fake_ccv.replies["o1"] = Reply(200, body, "application/json")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", "o1")).code == 0
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 75, result.stderr  # the order's check failed: to be asked again
    assert [e["type"] for e in read_events(tmp_path) if e.get("subject") == "o1"] == []


# --- NaN and Infinity -----------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("where", ["status", "another-key", "nested", "with-a-long-integer"])
async def test_nan_or_infinity_in_a_status_answer_is_no_json(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession, literal: str, where: str
) -> None:
    body = {
        "status": '{"orderStatus": %s}',
        "another-key": '{"orderStatus": "Completed", "amount": %s}',
        "nested": '{"orderStatus": "Completed", "o": [1, {"x": %s}]}',
        "with-a-long-integer": '{"orderStatus": "Completed", "n": ' + "7" * 5000 + ', "x": %s}',
    }[where] % literal
    assert await answered(fake_ccv, session, Reply(200, body, "application/json")) == PROTOCOL
    fake_ccv.always = Reply(200, body, "application/json")
    with pytest.raises(SourceUnavailable, match="protocol"):  # proves nothing to the probe
        await CCVClient(ccv_config(fake_ccv.base_url), session, secrets=()).probe()


def test_a_submit_answer_holding_nan_still_names_its_order() -> None:
    # CCV said it made the order: reading no id in it would let `ccv resolve --not-sent` close
    # the submit, and the same reference be sent again (a second order).
    answer = b'{"orderId": "ORD-7", "fee": NaN}'
    assert order_id_from(answer, ["orderId"]) == "ORD-7"


# --- content codings aiohttp leaves as they came ---------------------------------------------

STATUS = b'{"orderStatus": "Completed"}'


def coded(header: str, body: bytes) -> Reply:
    return Reply(200, body, "application/json", {"Content-Encoding": header})


@pytest.mark.parametrize(
    "reply",
    [
        coded("x-gzip", gzip.compress(STATUS)),
        coded("X-GZip", gzip.compress(STATUS)),
        coded("gzip, gzip", gzip.compress(gzip.compress(STATUS))),
        coded("deflate, gzip", gzip.compress(zlib.compress(STATUS))),
        coded("identity, x-gzip", gzip.compress(STATUS)),
    ],
    ids=lambda reply: reply.headers["Content-Encoding"],
)
async def test_an_answer_in_x_gzip_or_a_list_of_codings_is_decoded(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession, reply: Reply
) -> None:
    # Before, the bytes came through as sent and failed as `protocol`.
    assert await answered(fake_ccv, session, reply) == Observation(
        key("A1"), Outcome.OK, "Completed", asked=STAMPED
    )


async def test_a_decoded_answer_is_bounded_as_a_plain_one(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession
) -> None:
    bomb = b'{"orderStatus": "Completed", "pad": "' + b"0" * MAX_BODY_BYTES + b'"}'
    reply = coded("x-gzip", gzip.compress(bomb))
    assert len(reply.body) < MAX_BODY_BYTES // 100
    assert await answered(fake_ccv, session, reply) == PROTOCOL
    assert len(fake_ccv.requests) == 1


@pytest.mark.parametrize(
    ("reply", "named"),
    [
        (coded("x-gzip", STATUS), "x-gzip"),
        (coded("gzip, gzip", gzip.compress(STATUS)), "gzip, gzip"),
        (coded("compress", STATUS), "compress"),
        (coded("gzip, gzip, gzip, gzip, gzip", STATUS), "gzip, gzip, gzip, gzip, gzip"),
    ],
    ids=["not-gzip", "gzip-once", "compress", "five-codings"],
)
async def test_an_answer_in_a_coding_not_decoded_says_so(
    tmp_path: Path,
    fake_ccv: FakeCCV,
    session: aiohttp.ClientSession,
    reply: Reply,
    named: str,
) -> None:
    assert await answered(fake_ccv, session, reply) == PROTOCOL
    assert len(fake_ccv.requests) == 1  # the provider answered: no retry
    fake_ccv.always = reply
    with pytest.raises(ProtocolError, match=rf"content-encoding .*\({named}\)"):
        await CCVClient(ccv_config(fake_ccv.base_url), session, secrets=()).probe()
    result = await call_cli("--config", write_config(tmp_path, ccv=fake_ccv), "check", "--online")
    assert result.code == 75
    assert f"answer in a content-encoding that cannot be decoded ({named})" in result.stderr


# --- blanks around a reference ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "kept"),
    [(" RY4 ", "RY4"), ("\\tRY 4\u3000", "RY 4"), ("   ", None), ("\u00a0", None)],
    ids=["blanks-around", "tab-and-ideographic-space", "blanks-alone", "no-break-space"],
)
async def test_blanks_around_a_reference_are_no_part_of_it(
    fake_ccv: FakeCCV,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    reference: str,
    kept: str | None,
) -> None:
    body = '{"orderStatus": "New", "externalReference": "' + reference + '"}'
    assert await answered(fake_ccv, session, Reply(200, body, "application/json")) == Observation(
        key("A1"), Outcome.OK, "New", kept, asked=STAMPED
    )
    # What is kept is what a submit and `notification-url --ref` take; blanks alone are none.
    assert kept is None or reference_problem(kept, given=True, tracked=True) is None
    assert "ccv.reference_dropped" not in caplog.text


@pytest.mark.parametrize(
    "reference",
    ["\\u001fRY4", "\\u001cRY4", "RY4\\u0085", "RY4\\n", "\\u2028RY4"],
    ids=["unit-separator", "file-separator", "next-line", "line-feed", "line-separator"],
)
async def test_a_control_character_at_an_end_of_a_reference_is_no_blank(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession, reference: str
) -> None:
    # str.strip() dropped these too: `\x1fRY4` was kept as `RY4`, another reference than the
    # one CCV holds, instead of failing as one no database, log or URL holds.
    body = '{"orderStatus": "New", "externalReference": "' + reference + '"}'
    assert await answered(fake_ccv, session, Reply(200, body, "application/json")) == Observation(
        key("A1"), Outcome.FAILED, reason="unusable_reference", asked=STAMPED
    )
