"""A reference is meant to name one followed CCV order. A submit of a reference a followed
order carries (tracked with it, no submit of ours) is refused as a reference submitted already
is (API 409, `ccv submit` 65), nothing recorded or sent: doubled, the order costs twice. A track
of another order with such a reference (`track --ref`, a track file's lines, `POST /orders`) is
taken, as DESIGN.md's contract says (201/200, exit 0: an outside system may reuse one), and
said: the API's answer names the others (`also_carried_by`, as CCV's read-back does), the CLI
says one warning line, and one `order.reference_carried` log line. Real SQLite, real HTTP
against the daemon's API and a fake CCV on 127.0.0.1, the CLI in this process."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.writes.submit_outcome import REFERENCE_HEADER, own_from_header
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import Api, api_toml

O1 = "0b7c2a4e-8f0b-4d57-9a8e-2c1d3b5e7a91"
O2 = "0b7c2a4e-8f0b-4d57-9a8e-2c1d3b5e7a92"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


def track(order_id: str, ref: str | None) -> dict[str, object]:
    return {"source": "ccv", "order_id": order_id, "external_reference": ref}


async def test_a_submit_of_a_reference_a_followed_order_carries_is_refused(
    api: Api, fake: FakeCCVWrites
) -> None:
    assert (await api.call("POST", "/api/v1/orders", body=track(O1, "shop-7")))[0] == 201
    body = submit_body(externalReference="shop-7")
    status, document, headers = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert status == 409, document
    assert document["field"] == "externalReference"
    assert (document["order_id"], document["carried_by"]) == (O1, [O1])
    assert (document["state"], document["external_reference"]) == (None, "shop-7")
    assert own_from_header(headers[REFERENCE_HEADER]) == "shop-7"
    assert "Reconciler-Submission-State" not in headers  # nothing was submitted with it
    assert fake.submits == []
    assert api.rows("SELECT count(*) FROM submissions") == [(0,)]
    # Another reference goes as before.
    status, document, _ = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-8")
    )
    assert status == 201, document
    assert len(fake.submits) == 1


async def test_ccv_submit_of_a_reference_tracked_already_exits_65_and_sends_nothing(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    tracked = await call_cli("--config", cfg, "track", "ccv", O1, "--ref", "shop-9")
    assert tracked.code == 0, tracked.stderr
    stdin = json.dumps(submit_body(externalReference="shop-9")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (result.code, result.stdout) == (65, ""), result.stderr
    assert (
        f"reconciler: error: external reference shop-9 is followed already (order {O1}, "
        "not checked yet, carries it); not sent"
    ) in result.stderr
    assert fake.submits == []


async def test_track_of_another_order_with_a_reference_carried_is_taken_and_said(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler")
    status, document, _ = await api.call("POST", "/api/v1/orders", body=track(O1, "shop-1"))
    assert status == 201 and "also_carried_by" not in document, document
    assert not [r for r in caplog.records if r.getMessage() == "order.reference_carried"]
    status, document, _ = await api.call("POST", "/api/v1/orders", body=track(O2, "shop-1"))
    assert status == 201, document
    assert (document["external_reference"], document["also_carried_by"]) == ("shop-1", [O1])
    assert api.rows("SELECT order_id, external_reference FROM orders ORDER BY order_id") == [
        (O1, "shop-1"),
        (O2, "shop-1"),
    ]
    (line,) = [r for r in caplog.records if r.getMessage() == "order.reference_carried"]
    assert line.levelno == logging.WARNING
    said = line.fields  # type: ignore[attr-defined]
    assert (said["order_id"], said["external_reference"], said["also_carried_by"]) == (
        O2,
        "shop-1",
        [O1],
    )
    # Either carrier again: 200, nothing changes, nothing new to say; the answer names the other.
    status, document, _ = await api.call("POST", "/api/v1/orders", body=track(O1, "shop-1"))
    assert (status, document["also_carried_by"]) == (200, [O2])
    assert len([r for r in caplog.records if r.getMessage() == "order.reference_carried"]) == 1
    # A submit of it is refused still: it would make a third order at CCV.
    status, document, _ = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shop-1")
    )
    assert (status, document["carried_by"]) == (409, [O1, O2])
    assert fake.submits == []


async def test_orders_ccv_made_share_a_reference_are_tracked_again_with_it(
    api: Api, fake: FakeCCVWrites
) -> None:
    # CCV's read-back says both carry it (`also_carried_by`): its word, each order's own.
    for order_id in (O1, O2):
        assert (await api.call("POST", "/api/v1/orders", body=track(order_id, None)))[0] == 201
        fake.orders[order_id], fake.refs[order_id] = "New", "shared-1"
        status, fresh, _ = await api.call("GET", f"/api/v1/orders/ccv/{order_id}?refresh=1")
        assert (status, fresh["external_reference"]) == (200, "shared-1"), fresh
    for order_id in (O1, O2):
        status, document, _ = await api.call(
            "POST", "/api/v1/orders", body=track(order_id, "shared-1")
        )
        assert status == 200, document
        assert document["also_carried_by"] == [o for o in (O1, O2) if o != order_id]
    status, document, _ = await api.call(
        "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="shared-1")
    )
    assert (status, document["carried_by"]) == (409, [O1, O2])
    assert fake.submits == []


async def test_track_ref_and_a_track_file_take_a_second_carrier_and_say_so(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    first = await call_cli("--config", cfg, "track", "ccv", O1, "--ref", "inv-1")
    assert first.code == 0 and "warning" not in first.stderr, first.stderr
    result = await call_cli("--config", cfg, "track", "ccv", O2, "--ref", "inv-1")
    assert result.code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("reconciler: ")]
    assert warned == [
        f"reconciler: warning: reference inv-1 is carried by order {O1} too, which reconciler "
        f"follows: order {O2} is tracked with it (a submit of it is refused until CCV cancels "
        "them)"
    ], result.stderr
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (line,) = [d for d in logged if d.get("message") == "order.reference_carried"]
    assert (line["order_id"], line["also_carried_by"], line["orders"]) == (O2, [O1], 1), line
    # Two new orders of one file with one reference: both tracked with it, said once.
    lines = tmp_path / "orders.csv"
    o3, o4 = O2[:-1] + "3", O2[:-1] + "4"
    lines.write_text(f"{o3},inv-2\n{o4},inv-2\n")
    result = await call_cli("--config", cfg, "track", "ccv", "--from-file", lines)
    assert result.code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("reconciler: ")]
    assert len(warned) == 1 and f"reference inv-2 is carried by order {o3} too" in warned[0]
    result = await call_cli("--config", cfg, "orders", "--json")
    assert {o["order_id"]: o["external_reference"] for o in json.loads(result.stdout)} == {
        O1: "inv-1",
        O2: "inv-1",
        o3: "inv-2",
        o4: "inv-2",
    }
    # A submit of either reference is refused, nothing sent.
    stdin = json.dumps(submit_body(externalReference="inv-2")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 65, result.stderr
    assert fake.submits == []
