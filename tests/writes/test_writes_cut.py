"""The stop's cut of a write still out at its bound (writes/in_flight.py): one
`daemon.writes_cut` line, and the second a cut write has to end counted once, though the daemon
waits for its writes twice (its stop's work, then the API's shutdown). A write that does not end
within that second (a store call that does not answer) made a second line and a second wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from reconciler.writes.in_flight import Cut, InFlight

BOUND_S = 0.05
CUT_END_S = 1.0  # what a cut write gets to end (in_flight.py)


async def test_a_write_that_outlives_its_cut_is_cut_once_and_waited_for_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writes = InFlight()
    released = asyncio.Event()
    started = asyncio.Event()

    async def write() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # its provider never answers
        except asyncio.CancelledError:
            # Its recording, kept from cancellation (as a store's close waits for its thread),
            # does not end within its second either.
            while not released.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await released.wait()
            raise

    caller = asyncio.ensure_future(writes.run(write()))
    await started.wait()
    try:
        with caplog.at_level(logging.INFO, logger="reconciler.daemon"):
            began = time.monotonic()
            writes.stop(BOUND_S)
            await writes.wait()  # the stop's work
            first_s = time.monotonic() - began
            await writes.wait()  # the API's shutdown
            both_s = time.monotonic() - began
    finally:
        released.set()
        # Its caller is told it was cut (answered where it stands), not cancelled itself.
        with pytest.raises(Cut):
            await caller
    assert caller.done()
    cut = [r for r in caplog.records if r.getMessage() == "daemon.writes_cut"]
    assert first_s >= BOUND_S + CUT_END_S - 0.01
    # Twice the second past the bound was at least 2.05 s; what is left is a loaded machine's.
    assert both_s < BOUND_S + 2 * CUT_END_S, both_s
    assert [r.__dict__["fields"]["writes"] for r in cut] == [1]
