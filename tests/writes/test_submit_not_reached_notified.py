"""A CCV submit that never reached CCV, while a notification for its reference came: CCV has an
order of it (an earlier submit's), so the reference stays taken (review 30l)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import serve_api
from tests.writes.test_stop_refuses_late_writes import CountedGates


async def test_a_submit_not_reached_while_notified_keeps_its_reference(tmp_path: Path) -> None:
    gates = CountedGates()
    document = submit_body(externalReference="nr-1")
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as api:
        account = api.daemon.config.ccv[0]
        gate = gates.of(account)
        for _ in range(account.concurrency):
            await gate.acquire()  # every turn taken: the submit, recorded, waits for one
        first = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
        await gate.until_waiting(1)
        await api.daemon.hub.check_ccv_reference("default", "nr-1", 0.0)
        await ccv.close()  # CCV unreachable: the connection is refused, nothing is sent
        for _ in range(account.concurrency):
            gate.release()
        status, body, headers = await first
        assert status == 502 and "not sent again" in body["error"], body
        assert headers["Reconciler-Submission-State"] == "resolved"
        again, _, _ = await api.call("POST", "/api/v1/ccv/orders", body=document)
        assert again == 409
    assert ccv.submits == []
