"""Probe 40's findings on CCNow order actions' answers: a "not run" status whose body broke
after it began (its lines may have said CCNow ran it), a chunked answer's last line without its
line end, one order's odd line among others, a key's length, `--dry-run` and a read-back's
status word CCNow does not document. Each answer is sent by a fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reconciler.writes.ccnow_form import BadAction, from_document
from tests.conftest import write_config
from tests.fake_providers import FakeCCNow, Raw, Reply, ccnow_config
from tests.writes.test_ccnow_actions import A, B, ccnow, commands, make_due
from tests.writes.test_ccnow_commands_one_at_a_time import action_events, lost_twice

LINES = f"{A} pending\n{B} pending\n".encode()


@pytest.mark.parametrize(
    "raw",
    [
        # Short of its Content-Length: aiohttp read the head, then the body broke.
        b"HTTP/1.1 429 Too Many\r\nContent-Length: 200\r\n\r\n" + LINES,
        # The lines in the read that brought a broken chunk: aiohttp made no response.
        b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(LINES)
        + LINES
        + b"\r\nZZ\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 90\r\n\r\n"
        + LINES,
        # No line came whole: the rest may have been the orders' lines all the same.
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 200\r\n\r\n396-10-11",
    ],
    ids=["429-short", "429-broken-chunk", "403-after-100", "401-cut-in-a-line"],
)
async def test_a_not_run_status_whose_body_broke_after_it_began_never_sends_a_discount_twice(
    tmp_path: Path, fake_ccnow: FakeCCNow, raw: bytes
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.script = [Raw(raw=raw)]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    first = await ccnow(cfg, "adjust", A, B, "--amount", "1.00")
    assert first.code == 75, first.stdout + first.stderr
    status = raw.rsplit(b"HTTP/1.1 ", 1)[1][:3].decode()
    word = f"http_{status}_cut_short"
    assert commands(tmp_path) == [(A, "uncertain", word), (B, "uncertain", word)]
    again = await ccnow(cfg, "adjust", A, B, "--amount", "1.00")
    assert again.code == 75, again.stdout + again.stderr
    assert fake_ccnow.actions == []
    assert len(fake_ccnow.requests) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 429 Too Many\r\nContent-Length: 200\r\n\r\n",
        b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
    ids=["429-no-body", "401-no-chunk"],
)
async def test_a_not_run_status_whose_body_never_began_leaves_the_discount_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow, raw: bytes
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Raw(raw=raw)]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    first = await ccnow(cfg, "adjust", A, "--amount", "1.00")
    assert first.code == 75, first.stdout + first.stderr
    assert commands(tmp_path) == [(A, "queued", f"http {raw[9:12].decode()}")]
    await make_due(tmp_path)
    again = await ccnow(cfg, "adjust", A, "--amount", "1.00")
    assert again.code == 0, again.stdout + again.stderr
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust")]


@pytest.mark.parametrize(
    ("action", "args", "answer"),
    [
        ("adjust", ("--amount", "1.00"), "pending"),
        ("add-tracking", ("--carrier", "DHL", "--number", "JD0146"), "pending"),
        # A ship's or cancel's is read from its order's status (it may be a longer line cut).
        ("ship", (), "mark_shipped"),
    ],
)
async def test_a_whole_chunked_answer_without_its_last_line_end_settles_its_order(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, args: tuple[str, ...], answer: str
) -> None:
    # A CGI's answer behind a web server, its chunks ended cleanly: its last line was taken for
    # none, an adjust was uncertain and a tracking number uploaded again at every retry.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.after_applying = [Reply(200, f"{A} {answer}", chunked=True)]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, action, A, *args)
    assert result.code == 0, result.stdout + result.stderr
    read = " (the order's status)" if action == "ship" else ""
    assert commands(tmp_path) == [(A, "succeeded", answer + read)]
    assert len(fake_ccnow.actions) == 1
    again = await ccnow(cfg, action, A, *args)
    assert again.code == 0, again.stdout + again.stderr
    posts = [s for s in fake_ccnow.requests if s.form.get("x_action_1") != "query"]
    assert len(fake_ccnow.actions) == 1 and len(posts) == 1


@pytest.mark.parametrize(
    "odd",
    [f"{B}\xa0pending".encode("latin-1"), f"{B}\xa0pending".encode(), f"{B}: pending".encode()],
    ids=["latin-1-nbsp", "utf-8-nbsp", "colon"],
)
async def test_one_order_s_odd_line_is_its_own_and_the_other_lines_settle_theirs(
    tmp_path: Path, fake_ccnow: FakeCCNow, odd: bytes
) -> None:
    # The whole answer was unreadable: both discounts uncertain, though A's line was clear.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.after_applying = [Reply(200, f"{A} pending\n".encode() + odd + b"\n")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "adjust", A, B, "--amount", "1.00")
    assert result.code == 75, result.stdout + result.stderr
    states = [(o, s) for o, s, _ in commands(tmp_path)]
    assert states == [(A, "succeeded"), (B, "uncertain")]
    assert commands(tmp_path)[0][2] == "pending"


LONG = "k" * 200


async def test_a_key_of_200_characters_and_its_order_is_taken_by_key_as_by_keys(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # `keys` took it and `idempotency_key` refused it (422), `--key` too (65): a key the API
    # showed on a command could not be given again.
    cfg = ccnow_config(fake_ccnow.url)
    body = {"action": "adjust", "amount": "1.00"}
    by_keys = from_document(cfg, {**body, "order_ids": [B], "keys": [f"{LONG}/{B}"]})
    by_key = from_document(cfg, {**body, "order_id": B, "idempotency_key": f"{LONG}/{B}"})
    assert [c.key for c in by_key] == [c.key for c in by_keys] == [f"{LONG}/{B}"]
    # For several orders, each order's `KEY/ORDER` is what is checked, as `keys` does.
    several = from_document(cfg, {**body, "order_ids": [A, B], "key": LONG})
    assert [c.key for c in several] == [f"{LONG}/{A}", f"{LONG}/{B}"]
    with pytest.raises(BadAction, match="idempotency_key: at most 200 characters besides"):
        from_document(cfg, {**body, "order_id": B, "idempotency_key": f"{LONG}x/{B}"})
    fake_ccnow.orders = {B: "pending"}
    config = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(config, "adjust", B, "--amount", "1.00", "--key", f"{LONG}/{B}")
    assert result.code == 0, result.stdout + result.stderr
    refused = await ccnow(config, "adjust", B, "--amount", "1.00", "--key", f"{LONG}x/{B}")
    assert refused.code == 65 and "--key: at most 200 characters besides" in refused.stderr
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(B, "adjust")]


async def test_a_dry_run_says_a_command_waits_behind_an_older_one_as_the_real_run_does(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The dry run printed a ship post and exited 0, where the real run sends nothing (the ship
    # waits for the queued adjust) and exits 75; and it showed the password `%2A%2A%2A...`.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.script = [Reply(200, "error_message Database error\n")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await ccnow(cfg, "adjust", A, "--amount", "1.00")).code == 75
    assert commands(tmp_path) == [(A, "queued", "error_message Database error")]
    dry = await ccnow(cfg, "ship", A, B, "--dry-run")
    assert dry.code == 75, dry.stdout + dry.stderr
    assert f"{A} ship left out: queued: waits for #1 (adjust) of its order" in dry.stderr
    assert dry.stdout.splitlines()[1:4] == [
        "x_clientid=amylove",
        "x_password=***",
        f"x_orderid_1={B}",
    ]
    assert "x_orderid_2" not in dry.stdout
    real = await ccnow(cfg, "ship", A)
    assert real.code == 75, real.stdout + real.stderr
    assert "queued: waits for #1 (adjust) of its order" in real.stdout
    assert len(fake_ccnow.requests) == 1


@pytest.mark.parametrize("word", ["on hold", "mark_shipped extra"])
async def test_a_read_back_status_ccnow_does_not_document_never_refuses_a_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow, word: str
) -> None:
    # Refused as not pending after a lost answer, then read back as a word CCNow does not
    # document: it ended `refused`, though that word may say the lost post took.
    cfg = await lost_twice(tmp_path, fake_ccnow, "ship", A)
    fake_ccnow.script = [Reply(200, f"{A} error_message order not pending\n")]
    fake_ccnow.always = Reply(200, f"{A} {word}\n")
    again = await ccnow(cfg, "ship", A)
    assert again.code == 75, again.stdout + again.stderr
    [(_, state, answer)] = commands(tmp_path)
    assert state == "queued", answer
    # It was read: "(its order's status could not be read)" said otherwise.
    assert (
        answer
        == f"error_message order not pending (its order's status, {word!r}, is not documented)"
    )
    assert action_events(tmp_path) == []


async def test_a_408_whose_lines_came_then_whose_body_stalled_never_sends_a_discount_twice(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Its lines came, then the rest of its body did not within the timeout: it stayed queued.
    done = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 200\r\n\r\n" + LINES)
        await writer.drain()
        await done.wait()
        writer.close()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        cfg = write_config(tmp_path, ccnow=fake_ccnow)
        text = cfg.read_text().replace(fake_ccnow.url, f"http://127.0.0.1:{port}/oapi")
        cfg.write_text(text.replace('timeout = "2s"', 'timeout = "500ms"'))
        result = await ccnow(cfg, "adjust", A, "--amount", "1.00")
    finally:
        done.set()
        server.close()
        await server.wait_closed()
    assert result.code == 75, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "uncertain", "http_408_cut_short")]
