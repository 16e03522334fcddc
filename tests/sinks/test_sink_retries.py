"""A failed delivery's retry time: `retry_min` doubling with jitter, never past `retry_max`
even when the receiver's Retry-After asks for longer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from reconciler.config import JsonlSinkConfig
from reconciler.sinks.base import OutboxEvent, RetryLater
from reconciler.sinks.retries import down_pause, plan

NOW = 1_000_000.0
FAILED = RetryLater("http 500")
CFG = JsonlSinkConfig(name="j", path=Path("/dev/null"), retry_min_s=1.0, retry_max_s=8.0)


def retry_in(attempts: int, seed: int, failure: RetryLater = FAILED) -> float:
    row = OutboxEvent(seq=1, id="ev-1", type="t", order_id="o", body=b"{}", attempts=attempts)
    [(_, _, due)] = plan(CFG, [(row, failure)], {1: NOW}, NOW, random.Random(seed)).updates
    assert due is not None
    return due - NOW


@pytest.mark.parametrize("attempts", [3, 4, 10])
def test_a_retry_never_waits_past_retry_max(attempts: int) -> None:
    # 1 s doubled three times is the 8 s cap: with its jitter (up to a quarter more) it was
    # up to 10 s, past the longest wait the config allows.
    delays = [retry_in(attempts, seed) for seed in range(200)]

    assert max(delays) == CFG.retry_max_s


def test_below_the_cap_the_jitter_spreads_the_retries() -> None:
    delays = [retry_in(1, seed) for seed in range(200)]

    assert min(delays) >= 2.0
    assert max(delays) <= 2.5
    assert len(set(delays)) > 100


def test_a_retry_after_is_waited_for_up_to_retry_max() -> None:
    # `Retry-After: 99999999999` held the event, and every later one of its order, for the
    # events' max_age (3 days), across restarts: the receiver's word is taken up to retry_max.
    assert retry_in(0, 0, RetryLater("http 429", 6.0)) == 6.0
    assert retry_in(10, 0, RetryLater("http 503", 60.0)) == CFG.retry_max_s
    assert retry_in(0, 0, RetryLater("http 429", 99999999999.0)) == CFG.retry_max_s


def test_a_retry_after_pauses_the_sink_up_to_retry_max() -> None:
    row = OutboxEvent(seq=1, id="ev-1", type="t", order_id="o", body=b"{}", attempts=0)
    asked = [(row, RetryLater("http 429", 99999999999.0))]

    _, until = down_pause(CFG, 0, True, asked, NOW + 3 * 86400, NOW)

    assert until == NOW + CFG.retry_max_s
