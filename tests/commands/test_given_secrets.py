"""An order id or external reference given to reconciler that holds one of the config's secrets
(the CCV API key pasted into the wrong field) is refused: kept, it would be in the database, the
events and the log, and in CCV's status URLs. The refusal does not name the value."""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import pytest

from reconciler.redact import given_secrets, holds_secret
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow
from tests.server.test_api import TOKEN, api_toml, serve_api


def stored(tmp_path: Path) -> str:
    db = tmp_path / "reconciler.db"
    if not db.exists():
        return ""
    with closing(sqlite3.connect(db)) as conn:
        return "\n".join(conn.iterdump())


@pytest.mark.parametrize(
    "argv",
    [[CCV_KEY], ["0b7c2a4e-77", "--ref", f"ref-{CCV_KEY}"]],
    ids=["order-id", "reference"],
)
async def test_track_refuses_an_id_or_reference_holding_the_api_key(
    tmp_path: Path, argv: list[str]
) -> None:
    async with FakeCCVWrites() as fake:
        cfg = write_config(tmp_path, ccv=fake)
        result = await call_cli("--config", cfg, "track", "ccv", *argv)
    assert result.code == 65, result.stderr
    assert "holds a secret of this config" in result.stderr
    assert CCV_KEY not in result.stderr + result.stdout
    assert CCV_KEY not in stored(tmp_path)


async def test_the_api_refuses_an_id_reference_or_submit_holding_the_api_key(
    tmp_path: Path,
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with FakeCCVWrites() as fake, serve_api(tmp_path, fake) as api:
        for doc, field in [
            ({"source": "ccv", "order_id": CCV_KEY}, "order_id"),
            (
                {"source": "ccv", "order_id": "0b7c2a4e-77", "external_reference": CCV_KEY},
                "external_reference",
            ),
        ]:
            async with api.http.post(f"{api.url}/api/v1/orders", json=doc, headers=headers) as r:
                body = await r.json()
                assert (r.status, body["field"]) == (422, field), body
                assert CCV_KEY not in json.dumps(body)
        submit = submit_body(externalReference=f"INV-{CCV_KEY}")
        async with api.http.post(f"{api.url}/api/v1/ccv/orders", json=submit, headers=headers) as r:
            body = await r.json()
            assert (r.status, body["field"]) == (422, "externalReference"), body
        assert fake.submits == []
    assert CCV_KEY not in stored(tmp_path)


async def test_ccv_submit_refuses_a_reference_holding_the_api_key(tmp_path: Path) -> None:
    async with FakeCCVWrites() as fake:
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
        stdin = json.dumps(submit_body(externalReference=CCV_KEY)).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        assert fake.submits == []
    assert result.code == 65, result.stderr
    assert CCV_KEY not in result.stderr + result.stdout


def test_a_short_secret_is_not_looked_for_in_what_is_given() -> None:
    # A CCNow password of "42" refused every order id with those digits (142-00-0000).
    forms = given_secrets(["42", "shop", CCV_KEY])
    assert not holds_secret("142-00-0000", forms)
    assert not holds_secret("shop-order-7", forms)
    assert holds_secret(f"ref-{CCV_KEY}", forms)


async def test_notification_url_refuses_an_id_or_reference_holding_a_secret(
    tmp_path: Path,
) -> None:
    async with FakeCCVWrites() as fake:
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
        for option in ("--order", "--ref"):
            result = await call_cli("--config", cfg, "notification-url", "ccv", option, CCV_KEY)
            assert result.code == 65, result.stderr
            assert "holds a secret" in result.stderr
            assert CCV_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "option", [["--key", CCNOW_PASSWORD], ["--notes", f"pw is {CCNOW_PASSWORD}"]]
)
async def test_a_ccnow_action_refuses_a_key_or_notes_holding_a_secret(
    tmp_path: Path, fake_ccnow: FakeCCNow, option: list[str]
) -> None:
    # The key was stored and echoed back ("idempotency key '...' was given to another
    # command"), the notes stored and posted to CCNow.
    fake_ccnow.orders = {"396-10-1142": "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await call_cli("--config", cfg, "ccnow", "ship", "396-10-1142", *option)
    assert result.code == 65, result.stderr
    assert "holds a secret" in result.stderr
    assert CCNOW_PASSWORD not in result.stdout + result.stderr
    assert fake_ccnow.actions == []
    assert CCNOW_PASSWORD not in stored(tmp_path)


async def test_a_submit_or_action_refuses_another_accounts_secret_too(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Each looked for its own account's secret alone: a submit's reference holding the CCNow
    # password went to CCV and into the log; notes holding the CCV key went to CCNow.
    fake_ccnow.orders = {"396-10-1142": "pending"}
    async with FakeCCVWrites() as fake:
        cfg = write_config(tmp_path, ccv=fake, ccnow=fake_ccnow, extra=api_toml(free_port()))
        stdin = json.dumps(submit_body(externalReference=f"INV-{CCNOW_PASSWORD}")).encode()
        submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        assert fake.submits == []
        shipped = await call_cli(
            "--config", cfg, "ccnow", "ship", "396-10-1142", "--notes", f"k {CCV_KEY}"
        )
    assert (submitted.code, shipped.code) == (65, 65), submitted.stderr + shipped.stderr
    said = submitted.stdout + submitted.stderr + shipped.stdout + shipped.stderr
    assert CCNOW_PASSWORD not in said and CCV_KEY not in said
    assert fake_ccnow.actions == []


async def test_the_api_refuses_a_ccnow_id_holding_a_secret_without_quoting_it(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A CCNow id is checked as nine digits before anything else, and that refusal quoted the
    # id: the API token, given as an order id, came back in the 422.
    async with FakeCCVWrites() as fake, serve_api(tmp_path, fake, ccnow=fake_ccnow) as api:
        for secret in (TOKEN, CCV_KEY, CCNOW_PASSWORD):
            calls: list[tuple[str, str, object]] = [
                ("POST", "/api/v1/orders", {"source": "ccnow", "order_id": secret}),
                ("GET", f"/api/v1/orders/ccnow/{secret}", None),
                ("DELETE", f"/api/v1/orders/ccnow/{secret}", None),
                ("POST", "/api/v1/ccnow/actions", {"order_id": secret, "action": "ship"}),
                ("POST", "/api/v1/ccnow/actions/resolve", {"order_id": secret, "sent": True}),
            ]
            for method, path, doc in calls:
                status, body, _ = await api.call(method, path, body=doc)
                assert (status, body["field"]) == (422, "order_id"), (path, body)
                assert "holds a secret of this config" in body["error"]
                assert secret not in json.dumps(body)
    assert fake_ccnow.actions == []
    assert CCNOW_PASSWORD not in stored(tmp_path) and TOKEN not in stored(tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ["track", "ccnow", CCNOW_PASSWORD],
        ["untrack", "ccnow", CCNOW_PASSWORD],
        ["track", "ccnow", "--from-file", "orders.csv"],
        ["ccnow", "ship", CCNOW_PASSWORD],
        ["ccnow", "resolve", CCNOW_PASSWORD, "--sent"],
    ],
    ids=["track", "untrack", "track-file", "ship", "resolve"],
)
async def test_the_cli_refuses_a_ccnow_id_holding_a_secret_without_quoting_it(
    tmp_path: Path, fake_ccnow: FakeCCNow, argv: list[str]
) -> None:
    (tmp_path / "orders.csv").write_text(f"396-10-1142\n{CCNOW_PASSWORD}\n")
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    argv = [str(tmp_path / a) if a == "orders.csv" else a for a in argv]
    result = await call_cli("--config", cfg, *argv)
    assert result.code == 65, result.stderr
    assert "holds a secret of this config" in result.stderr
    assert CCNOW_PASSWORD not in result.stdout + result.stderr
    assert CCNOW_PASSWORD not in stored(tmp_path)


# Malformed too (a zero-width space): the refusal of a malformed reference quotes it, and ran
# before the secret check, or without one.
MALFORMED_REF = f"INV-{CCV_KEY}\u200b"


async def test_a_malformed_reference_holding_the_api_key_is_refused_unquoted_by_the_api(
    tmp_path: Path,
) -> None:
    calls: list[tuple[str, str, object, str]] = [
        (
            "POST",
            "/api/v1/orders",
            {"source": "ccv", "order_id": "0b7c2a4e-77", "external_reference": MALFORMED_REF},
            "external_reference",
        ),
        ("GET", f"/api/v1/ccv/submissions/{quote(MALFORMED_REF, safe='')}", None, "reference"),
        (
            "POST",
            "/api/v1/ccv/submissions/resolve",
            {"external_reference": MALFORMED_REF, "sent": False},
            "external_reference",
        ),
    ]
    calls.append(
        (
            "POST",
            "/api/v1/ccv/orders",
            submit_body(externalReference=MALFORMED_REF),
            "externalReference",
        )
    )
    async with FakeCCVWrites() as fake, serve_api(tmp_path, fake) as api:
        for method, path, doc, field in calls:
            status, body, _ = await api.call(method, path, body=doc)
            assert (status, body["field"]) == (422, field), (path, body)
            assert "holds a secret of this config" in body["error"]
            assert CCV_KEY not in json.dumps(body)
    assert CCV_KEY not in stored(tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ["track", "ccv", "0b7c2a4e-77", "--ref", MALFORMED_REF],
        ["ccv", "resolve", "--ref", MALFORMED_REF, "--not-sent"],
        ["notification-url", "ccv", "--ref", f"{CCV_KEY} "],
        ["ccv", "submit", "-"],
    ],
    ids=["track", "ccv-resolve", "notification-url", "ccv-submit"],
)
async def test_a_malformed_reference_holding_the_api_key_is_refused_unquoted_by_the_cli(
    tmp_path: Path, argv: list[str]
) -> None:
    stdin = json.dumps(submit_body(externalReference=MALFORMED_REF)).encode()
    async with FakeCCVWrites() as fake:
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
        result = await call_cli("--config", cfg, *argv, stdin=stdin)
        assert fake.submits == []
    assert result.code == 65, result.stderr
    assert "holds a secret of this config" in result.stderr
    assert CCV_KEY not in result.stdout + result.stderr


async def test_a_body_key_or_query_name_holding_a_secret_is_refused_unechoed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An unknown field, a key given twice, a parameter given twice: each refusal named it, in
    # the answer and in the log's `api.rejected` line.
    caplog.set_level(logging.DEBUG, logger="reconciler.api")
    twice = f'{{"{CCV_KEY}": 1, "{CCV_KEY}": 2}}'.encode()
    async with FakeCCVWrites() as fake, serve_api(tmp_path, fake) as api:
        for secret in (CCV_KEY, TOKEN):
            calls = [
                ("POST", "/api/v1/orders", {"source": "ccv", secret: 1}, None, 422),
                (
                    "POST",
                    "/api/v1/orders",
                    None,
                    twice.replace(CCV_KEY.encode(), secret.encode()),
                    400,
                ),
                ("GET", f"/api/v1/events?{secret}=1&{secret}=2", None, None, 400),
            ]
            for method, path, doc, raw, code in calls:
                status, body, _ = await api.call(method, path, body=doc, raw=raw)
                assert status == code, (path, body)
                assert "holds a secret of this config" in body["error"], body
                assert secret not in json.dumps(body)
    logged = [r for r in caplog.records if r.getMessage() == "api.rejected"]
    assert len(logged) == 6
    assert not any(s in repr(vars(r)) for r in logged for s in (CCV_KEY, TOKEN))
