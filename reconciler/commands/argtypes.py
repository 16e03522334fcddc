"""The values of command-line options: argparse types that refuse a bad value with a message
naming it (a usage error, exit 2)."""

from __future__ import annotations

import argparse
import math
from datetime import datetime, timezone

from ..config import parse_duration


def _number(text: str) -> float:
    """The number an option's text says, or NaN (which every range below refuses)."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def positive(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def speed(text: str) -> float:
    value = _number(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a speed of 0 or more")
    return value


def order_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of orders from 0 to 1000000")
    return value


def share(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share from 0 to 1")
    return value


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def iso(text: str) -> float:
    try:
        # RFC 3339 allows a lowercase "t" and "z".
        value = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()
