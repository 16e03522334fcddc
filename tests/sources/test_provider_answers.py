"""Plausible provider answers the documents leave open, end to end through the CLI (in-process):
none of them is a false event, a lost status, a traceback, or a secret in a kept text (issue 10)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import aiohttp

from tests.conftest import (
    call_cli,
    cli_env,
    daemon_here,
    free_port,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_providers import CCNOW_CLIENT_ID, CCV_KEY, FakeCCNow, FakeCCV, Reply
from tests.notify_socket import NotifySocket


async def orders(cfg: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = await call_cli("--config", cfg, "orders", "--json", env=env)
    assert result.code == 0, result.stderr
    return {row["order_id"]: row for row in json.loads(result.stdout)}


async def test_a_reference_that_cannot_be_stored_fails_its_order_alone(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    ids = ["order-a", "order-b", "order-c"]
    fake_ccv.orders = dict.fromkeys(ids, "New")
    fake_ccv.replies["order-b"] = Reply(
        200, '{"orderStatus": "New", "externalReference": "\\udcff"}', "application/json"
    )
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *ids)).code == 0

    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 75, result.stderr  # a check failed: worth trying again, not a crash
    assert "Traceback" not in result.stderr
    discovered = {e["subject"] for e in read_events(tmp_path) if e["type"] == "order.discovered"}
    assert discovered == {"order-a", "order-c"}
    rows = await orders(cfg)
    assert (rows["order-a"]["status"], rows["order-b"]["status"]) == ("New", None)

    del fake_ccv.replies["order-b"]
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    assert (await orders(cfg))["order-b"]["status"] == "New"


async def test_a_retry_after_of_superscript_digits_is_retried_not_a_crash(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {"396-10-1142": "pending"}
    fake_ccnow.script = [Reply(503, headers={"Retry-After": "²"})]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert [e["type"] for e in read_events(tmp_path)] == ["order.discovered"]


# A password with characters that form-encoding changes, and a tail to tell pieces apart.
PASSWORD = "Q@7 z/+%&=ÄX9!kV-tail"


def pieces(secret: str, size: int) -> set[str]:
    """Every `size`-character piece of the forms a provider may echo the secret in."""
    forms = {secret, quote_plus(secret), quote(secret, safe="")}
    return {form[i : i + size] for form in forms for i in range(len(form) - size + 1)}


async def test_a_password_echoed_encoded_and_cut_reaches_no_kept_text(tmp_path: Path) -> None:
    # The provider quotes our request back; our 200-character cut falls inside the password.
    echoed = urlencode([("x_clientid", CCNOW_CLIENT_ID), ("x_password", PASSWORD)])
    text = "error_message cannot parse request: " + "x" * 140 + " " + echoed + "\n"
    async with FakeCCNow(password=PASSWORD) as fake:
        fake.orders = {"396-10-1142": "pending"}
        cfg = write_config(tmp_path, ccnow=fake)
        env = cli_env(RECONCILER_CCNOW_PASSWORD=PASSWORD)
        assert (await call_cli("--config", cfg, "catch-up", env=env)).code == 0
        fake.always = Reply(200, text)
        result = await call_cli("--config", cfg, "catch-up", env=env)
        status = await call_cli("--config", cfg, "status", "--json", env=env)

    assert result.code == 75
    failed = [e for e in read_events(tmp_path) if e["type"] == "source.failed"]
    assert len(failed) == 1 and "cannot parse request" in json.dumps(failed[0])
    texts = {
        "log": result.stderr,
        "jsonl": (tmp_path / "events.jsonl").read_text(),
        "status": status.stdout + status.stderr,
    }
    for name, kept in texts.items():
        leaked = [piece for piece in pieces(PASSWORD, 4) if piece in kept]
        assert leaked == [], name
    for path in tmp_path.glob("reconciler.db*"):
        data = path.read_bytes()
        leaked = [p for p in pieces(PASSWORD, 6) if p.encode() in data]
        assert leaked == [], path.name


CCNOW_TOKEN = "ccnow-token-ABCDEFGH12345678"


async def test_ids_in_a_ccnow_notification_are_queried_and_followed(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    port = free_port()
    fake_ccnow.orders = {"501-00-0001": "processing"}  # not pending: the list does not show it
    cfg = write_config(
        tmp_path,
        ccnow=fake_ccnow,
        ccnow_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"',
        extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n',
    )
    env = cli_env(
        RECONCILER_RECEIVER_SECRET="receiver-secret-0123456789abcdef",
        RECONCILER_CCNOW_NOTIFICATION_TOKEN=CCNOW_TOKEN,
    )
    with NotifySocket.abstract() as sock:
        async with daemon_here(cfg, {**env, **sock.env()}) as run:
            await sock.wait_for_async("READY", "1", timeout_s=20)
            url = f"http://127.0.0.1:{port}/notify/ccnow/default/{CCNOW_TOKEN}"
            async with (
                aiohttp.ClientSession() as http,
                http.post(url, data={"order_id": "501000001", "status": "processing"}) as resp,
            ):
                assert resp.status == 202
            await poll_until(lambda: read_events(tmp_path), 60, "the notified order's event")
            [event] = read_events(tmp_path)
            assert (event["type"], event["subject"]) == ("order.discovered", "501-00-0001")
            assert event["data"]["via"] == "notification"
            assert event["data"]["status"] == "processing"
            assert await asyncio.wait_for(run.stop(), 10) == 0
    assert (await orders(cfg, env))["501-00-0001"]["status"] == "processing"


async def test_a_latin1_byte_in_one_pending_line_fails_that_order_alone(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Invariant 7: one order's bad line fails that order, not the account's other orders; a
    # followed order on such a line is queried on its own, and that is its check.
    fake_ccnow.orders = {"396-10-1142": "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", "396101142")).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    listing = Reply(200, b"396-10-1141 pending\n396-10-1142 pend\xe9\n396-10-1143 pend\xe9\n")
    fake_ccnow.script = [listing, Reply(200, b"396-10-1142 pend\xe9\n")]
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 75, result.stderr  # the followed order's own check failed
    assert "Traceback" not in result.stderr
    assert "ccnow.pending_lines_unreadable" in result.stderr
    types = [(e["type"], e["subject"]) for e in read_events(tmp_path)]
    # No source.failed: the account answered; the order nobody follows is no check of it.
    assert types == [
        ("order.discovered", "396-10-1142"),
        ("order.discovered", "396-10-1141"),
    ]
    assert (await orders(cfg))["396-10-1141"]["status"] == "pending"
    assert "396-10-1143" not in await orders(cfg)
    # The whole list unreadable, nothing else followed: still no account failure.
    fake_ccnow.script = [Reply(200, b"396-10-1143 pend\xe9\n")]
    again = await call_cli("--config", cfg, "catch-up", "--source", "ccnow")
    assert "source.failed" not in again.stderr, again.stderr


def kept_texts(tmp_path: Path, *outputs: str) -> dict[str, bytes]:
    """Every text a run keeps: its outputs, the jsonl sink's file, the database's files."""
    texts = {f"output {i}": out.encode() for i, out in enumerate(outputs)}
    texts["jsonl"] = (tmp_path / "events.jsonl").read_bytes()
    texts.update({p.name: p.read_bytes() for p in tmp_path.glob("reconciler.db*")})
    return texts


async def test_a_ccnow_password_echoed_as_an_order_status_is_kept_nowhere(
    tmp_path: Path,
) -> None:
    # A password of letters and digits makes a line that reads like a status of two words.
    password = "wXk7Pq2Lm9Zt4Rv8"
    async with FakeCCNow(password=password) as fake:
        fake.orders = {"396-10-1142": "pending", "397-10-1159": "pending"}
        fake.extra_lines = [f"100-00-0002 wrong password {password}"]
        cfg = write_config(tmp_path, ccnow=fake)
        env = cli_env(RECONCILER_CCNOW_PASSWORD=password)
        assert (await call_cli("--config", cfg, "track", "ccnow", "100-00-0002", env=env)).code == 0
        result = await call_cli("--config", cfg, "catch-up", env=env)
        listed = await call_cli("--config", cfg, "orders", "--json", env=env)
    # That order's check failed; the others were discovered as usual.
    assert result.code == 75, result.stderr
    discovered = {e["subject"] for e in read_events(tmp_path) if e["type"] == "order.discovered"}
    assert discovered == {"396-10-1142", "397-10-1159"}
    for name, kept in kept_texts(tmp_path, result.stderr, listed.stdout).items():
        assert password.encode() not in kept, name


async def test_a_ccv_key_echoed_as_a_status_or_reference_is_kept_nowhere(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    ids = ["order-a", "order-b", "order-c", "order-d"]
    fake_ccv.orders = dict.fromkeys(ids, "New")
    fake_ccv.replies["order-b"] = Reply(
        200, json.dumps({"orderStatus": f"bad key {CCV_KEY}"}), "application/json"
    )
    basic = base64.b64encode(f"{CCV_KEY}:".encode()).decode()
    fake_ccv.replies["order-d"] = Reply(
        200, json.dumps({"orderStatus": f"Basic {basic}"}), "application/json"
    )
    fake_ccv.replies["order-c"] = Reply(
        200, json.dumps({"orderStatus": "New", "externalReference": CCV_KEY}), "application/json"
    )
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *ids)).code == 0
    result = await call_cli("--config", cfg, "catch-up")
    listed = await call_cli("--config", cfg, "orders", "--json")
    assert result.code == 75, result.stderr
    discovered = {e["subject"] for e in read_events(tmp_path) if e["type"] == "order.discovered"}
    assert discovered == {"order-a"}
    for name, kept in kept_texts(tmp_path, result.stderr, listed.stdout).items():
        assert CCV_KEY.encode() not in kept and basic.encode() not in kept, name


async def test_a_password_ccnow_cut_inside_its_text_or_wrote_in_capitals_is_masked(
    tmp_path: Path,
) -> None:
    # CCNow quoting the password cut short mid-sentence, or in capitals: no piece survives.
    password = "Zq9+pw&x=7%Secret"
    async with FakeCCNow(password=password) as fake:
        fake.orders = {"396-10-1142": "pending"}
        cfg = write_config(tmp_path, ccnow=fake)
        env = cli_env(RECONCILER_CCNOW_PASSWORD=password)
        assert (await call_cli("--config", cfg, "catch-up", env=env)).code == 0
        fake.always = Reply(
            200, f"error_message password {password[:14]}... refused for {password.upper()}\n"
        )
        result = await call_cli("--config", cfg, "catch-up", env=env)
        status = await call_cli("--config", cfg, "status", "--json", env=env)
    assert result.code == 75
    for name, kept in kept_texts(tmp_path, result.stderr, status.stdout).items():
        for piece in (password[:8], password.upper()[:8], password[6:14]):
            assert piece.encode() not in kept, (name, piece)
