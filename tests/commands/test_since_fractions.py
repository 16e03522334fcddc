"""`--since` with an ISO 8601 decimal fraction of the hour or minute (`17.5`, `17:22.5`): read by
Python's fromisoformat as a fraction of a second (17:00:00.5, 17:22:00.5), so refused as a usage
error naming the value; a fraction of the seconds stays read."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconciler.commands.argtypes import iso
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCV


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-03T17:22.5Z",
        "2026-12-03T17:22,5Z",
        "2026-12-03T17.5Z",
        "2026-12-03T17,5",
        "20261203T1722.5",
        "20261203T17.5+01:00",
        "2026-12-03T17:22:30+05:30.5",  # the offset's minutes
    ],
)
def test_a_fraction_of_the_hour_or_minute_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        iso(text)
    assert repr(text) in str(refused.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03T17:22:30.5Z", datetime(2026, 12, 3, 17, 22, 30, 500000, timezone.utc)),
        ("2026-12-03T17:22:30,25Z", datetime(2026, 12, 3, 17, 22, 30, 250000, timezone.utc)),
        ("20261203T172230.5Z", datetime(2026, 12, 3, 17, 22, 30, 500000, timezone.utc)),
        ("2026-12-03T17:22Z", datetime(2026, 12, 3, 17, 22, tzinfo=timezone.utc)),
        ("2026-12-03", datetime(2026, 12, 3, tzinfo=timezone.utc)),
    ],
)
def test_a_fraction_of_the_seconds_is_read(text: str, expected: datetime) -> None:
    assert iso(text) == expected.timestamp()


async def test_events_since_a_fraction_of_the_minute_is_a_usage_error(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    result = await call_cli("--config", cfg, "events", "--since", "2026-12-03T17:22.5Z")
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "'2026-12-03T17:22.5Z'" in result.stderr
    assert result.stdout == ""
