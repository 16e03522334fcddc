"""A duplicate of a CCV submit (the same reference, a caller's retry) that comes while the first
waits for its account's turn (m1 finding 4): it is told what becomes of the first, not
"submitted already" about a submit a stop then withdraws. The daemon's API over HTTP in this
process, against a fake CCV on 127.0.0.1, every turn of the account held by the test."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import Api, serve_api
from tests.writes.test_stop_refuses_late_writes import CountedGate, CountedGates

SUBMIT = "/api/v1/ccv/orders"


class Seen(logging.Handler):
    """Sets `seen` when a log line with the message `message` is emitted."""

    def __init__(self, message: str) -> None:
        super().__init__(logging.DEBUG)
        self.message = message
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.seen.set()


@contextmanager
def watching(message: str) -> Iterator[Seen]:
    logger = logging.getLogger("reconciler.writes.submit")
    handler, level = Seen(message), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def first_and_duplicate(
    served: Api, gate: CountedGate, seen: Seen, ref: str
) -> tuple[asyncio.Future[tuple[int, dict[str, object], object]], ...]:
    """Send a submit that waits for its turn, then its duplicate; return both calls once the
    duplicate waits too (or, the fault this guards against, answered at once)."""
    first = asyncio.ensure_future(
        served.call("POST", SUBMIT, body=submit_body(externalReference=ref))
    )
    await gate.until_waiting(1)
    duplicate = asyncio.ensure_future(
        served.call("POST", SUBMIT, body=submit_body(externalReference=ref))
    )
    waiting = asyncio.ensure_future(seen.seen.wait())
    # No time limit: one (5 s) ran out on a loaded machine before the duplicate was waiting,
    # and the test went on to release the turn under it.
    await asyncio.wait({duplicate, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    return first, duplicate


@pytest.mark.parametrize("stop", [True, False], ids=["stop-begins", "no-stop"])
async def test_a_duplicate_of_a_submit_waiting_for_its_turn_is_told_what_becomes_of_it(
    tmp_path: Path, stop: bool
) -> None:
    gates = CountedGates()
    with watching("ccv.submit_waits_for_earlier") as seen:
        async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as served:
            account = served.daemon.config.ccv[0]
            gate = gates.of(account)
            for _ in range(account.concurrency):
                await gate.acquire()
            first, duplicate = await first_and_duplicate(served, gate, seen, "shop-7")
            if stop:
                served.daemon.writes.stop(5.0)
            for _ in range(account.concurrency):
                gate.release()
            (status, answered, _), (again, told, _) = await asyncio.gather(first, duplicate)
            rows = served.rows("SELECT external_reference, state FROM submissions")
    if stop:
        # Neither was sent: both callers are told to submit it again, nothing is kept.
        assert (status, again) == (503, 503), (answered, told)
        assert "nothing was recorded or sent" in str(told["error"])
        assert rows == [] and ccv.submits == []
    else:
        # The first went out: the duplicate is refused as submitted already, not sent.
        assert (status, again) == (201, 409), (answered, told)
        assert "submitted already" in str(told["error"])
        assert rows == [("shop-7", "succeeded")] and len(ccv.submits) == 1
        # ... with what became of it: CCV named the order by then.
        assert (told["state"], told["order_id"]) == ("succeeded", answered["orderId"])


async def test_a_duplicate_of_a_submit_whose_connection_failed_is_not_told_submitted_already(
    tmp_path: Path,
) -> None:
    gates = CountedGates()
    with watching("ccv.submit_waits_for_earlier") as seen:
        async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as served:
            account = served.daemon.config.ccv[0]
            gate = gates.of(account)
            for _ in range(account.concurrency):
                await gate.acquire()
            first, duplicate = await first_and_duplicate(served, gate, seen, "shop-9")
            assert not duplicate.done()
            await ccv.close()  # CCV unreachable: the connection is refused, nothing is sent
            for _ in range(account.concurrency):
                gate.release()
            (status, _, _), (again, told, _) = await asyncio.gather(first, duplicate)
    # Both found CCV unreachable in turn; neither caller holds a 409 for a submit never sent.
    assert (status, again) == (502, 502), told
    assert ccv.submits == []


async def test_a_duplicate_of_a_submit_a_stop_keeps_for_its_notification_is_refused(
    tmp_path: Path,
) -> None:
    # The first waits for its turn, its duplicate for it; a CCV notification for the reference
    # comes (CCV has an order of it), then the stop: the first is kept `resolved`, and the
    # duplicate, told "submit it again" with the first withdrawn, would make a second order
    # once the daemon runs again.
    gates = CountedGates()
    with watching("ccv.submit_waits_for_earlier") as seen:
        async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as served:
            account = served.daemon.config.ccv[0]
            gate = gates.of(account)
            for _ in range(account.concurrency):
                await gate.acquire()
            first, duplicate = await first_and_duplicate(served, gate, seen, "shop-8")
            assert not duplicate.done()
            await served.daemon.hub.check_ccv_reference("default", "shop-8", 0.0)
            served.daemon.writes.stop(5.0)
            for _ in range(account.concurrency):
                gate.release()
            (status, answered, _), (again, told, _) = await asyncio.gather(first, duplicate)
            rows = served.rows("SELECT external_reference, state FROM submissions")
    assert rows == [("shop-8", "resolved")] and ccv.submits == []
    assert (status, answered.get("state")) == (503, "resolved"), answered
    assert (again, told.get("state")) == (409, "resolved"), told
    assert "submitted already" in str(told["error"])
