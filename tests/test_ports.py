"""The tests' own loopback ports: each xdist worker's share lies below the ephemeral range."""

from __future__ import annotations

import pytest

from tests.ports import _share


@pytest.mark.parametrize("start", [32_768, 40_000, 10_004])
def test_the_workers_shares_are_apart_and_below_the_ephemeral_range(start: int) -> None:
    shares = [_share(worker, 4, start) for worker in range(4)]
    ports = [port for share in shares for port in share]
    assert len(ports) == len(set(ports))
    assert all(10_000 <= port < start for port in ports)
    # A worker replacing a crashed one (xdist numbers it on: gw4, gw5) takes a crashed one's.
    assert _share(4, 4, start) == shares[0] and _share(5, 4, start) == shares[1]


def test_no_room_below_the_ephemeral_range_is_no_share() -> None:
    assert not _share(0, 1, 1024) and not _share(3, 4, 10_003)
