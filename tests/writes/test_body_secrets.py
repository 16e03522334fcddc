"""A CCV body (a submit's, a pricing's) holding a secret of the config is refused before
anything is recorded or sent, as a CCNow action's notes or key holding one are: the CCNow
password pasted into `orderNotes` went to CCV (201). Any JSON string counts, keys included,
once its escapes are read; the CCV API key too (it goes in the Authorization header, never in
a body). The refusal names where, never the value."""

from __future__ import annotations

import copy
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from reconciler.redact import given_secrets
from reconciler.writes.body_secrets import secret_at
from tests.commands.test_given_secrets import stored
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow
from tests.server.test_api import GOOD_PRICES, api_toml, serve_api

# Each secret where a caller may put it, and the path the refusal names: never the value.
PLACED: list[tuple[str, Any, str]] = [
    ("notes", {"order": {"orderNotes": f"pw: {CCNOW_PASSWORD}"}}, "$.order.orderNotes"),
    ("ccv-key", {"order": {"x": [1, {"y": CCV_KEY}]}}, "$.order.x[1].y"),
    ("a-key", {"order": {CCNOW_PASSWORD: 1}}, "$.order (a key)"),
]


def _escaped(text: str) -> str:
    """JSON text with every character of its strings written as a \\u escape."""
    return json.dumps(json.loads(text), ensure_ascii=True).replace(
        CCNOW_PASSWORD, "".join(f"\\u{ord(c):04x}" for c in CCNOW_PASSWORD)
    )


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def _submissions(tmp_path: Path) -> int:
    db = tmp_path / "reconciler.db"
    if not db.exists():
        return 0
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM submissions").fetchone()[0])


def test_the_path_of_the_first_string_holding_a_secret_is_named() -> None:
    forms = given_secrets([CCNOW_PASSWORD, CCV_KEY])
    for _, extra, path in PLACED:
        assert secret_at(_merged(submit_body(), extra), forms) == path
    assert secret_at(submit_body(), forms) is None
    assert secret_at({"a": CCV_KEY.upper()}, forms) == "$.a"  # in any case, as for CCNow
    assert secret_at({"a": 12345678}, given_secrets(["12345678"])) is None  # strings only
    assert secret_at({"a": CCV_KEY}, None) is None
    # Keys holding no secret each may spell one joined by the path's dots: the path is printed.
    dotted = given_secrets(["ab12.cd34ef"])
    assert secret_at({"ab12": {"cd34ef": "x ab12.cd34ef"}}, dotted) == "$ (a key's path)"


@pytest.mark.parametrize(
    ("extra", "path"), [(e, p) for _, e, p in PLACED], ids=[i for i, *_ in PLACED]
)
async def test_ccv_submit_refuses_a_body_holding_a_secret(
    tmp_path: Path, fake_ccnow: FakeCCNow, extra: dict[str, Any], path: str
) -> None:
    async with FakeCCVWrites() as fake:
        cfg = write_config(tmp_path, ccv=fake, ccnow=fake_ccnow, extra=api_toml(free_port()))
        body = _merged(submit_body(externalReference="SEC-1"), extra)
        for text in (json.dumps(body), _escaped(json.dumps(body))):
            result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=text.encode())
            assert result.code == 65, result.stderr
            assert f"{path}: holds a secret of this config" in result.stderr, result.stderr
            said = result.stdout + result.stderr
            assert CCNOW_PASSWORD not in said and CCV_KEY not in said
        assert fake.submits == []
    assert _submissions(tmp_path) == 0
    assert CCNOW_PASSWORD not in stored(tmp_path)


@pytest.mark.parametrize(
    ("extra", "path"), [(e, p) for _, e, p in PLACED], ids=[i for i, *_ in PLACED]
)
async def test_the_api_refuses_a_submit_or_prices_holding_a_secret(
    tmp_path: Path, fake_ccnow: FakeCCNow, extra: dict[str, Any], path: str
) -> None:
    async with FakeCCVWrites() as fake, serve_api(tmp_path, fake, ccnow=fake_ccnow) as api:
        calls = [
            ("POST", "/api/v1/ccv/orders", _merged(submit_body(externalReference="SEC-1"), extra)),
            ("PATCH", "/api/v1/ccv/pricing", _merged(GOOD_PRICES, extra)),
        ]
        for method, route, body in calls:
            for raw in (json.dumps(body), _escaped(json.dumps(body))):
                status, answer, _ = await api.call(method, route, raw=raw.encode())
                # A pricing refusal lists its problems, the secret's first.
                named = answer["problems"][0]["path"] if "problems" in answer else answer["field"]
                assert (status, named) == (422, path), (route, answer)
                assert "holds a secret of this config" in answer["error"]
                assert CCNOW_PASSWORD not in json.dumps(answer) and CCV_KEY not in json.dumps(
                    answer
                )
        assert (fake.submits, fake.pricing_calls) == ([], [])
    assert _submissions(tmp_path) == 0
    assert CCNOW_PASSWORD not in stored(tmp_path)


async def test_check_pricing_refuses_prices_holding_a_secret_of_its_config(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    async with FakeCCVWrites() as fake:
        cfg = write_config(tmp_path, ccv=fake, ccnow=fake_ccnow)
        body = _merged(GOOD_PRICES, {"order": {"orderNotes": f"pw: {CCNOW_PASSWORD}"}})
        stdin = _escaped(json.dumps(body)).encode()
        plain = await call_cli("--config", cfg, "ccv", "check-pricing", "-", stdin=stdin)
        assert plain.code == 65, plain.stdout + plain.stderr
        assert "$.order.orderNotes: holds a secret of this config" in plain.stdout
        asked = await call_cli("--config", cfg, "ccv", "check-pricing", "--json", "-", stdin=stdin)
        assert asked.code == 65
        report = json.loads(asked.stdout)
        assert report["ok"] is False
        assert report["problems"][0]["path"] == "$.order.orderNotes"
        assert CCNOW_PASSWORD not in plain.stdout + plain.stderr + asked.stdout + asked.stderr
        # The same body without the secret is consistent: only the secret refused it.
        clean = json.dumps(_merged(GOOD_PRICES, {"order": {"orderNotes": "hi"}})).encode()
        fine = await call_cli("--config", cfg, "ccv", "check-pricing", "-", stdin=clean)
        assert fine.code == 0, fine.stdout
