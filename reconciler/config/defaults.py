"""Choices and defaults the loader uses that are more than one value."""

from __future__ import annotations

from dataclasses import fields
from typing import Literal

from .schema import CommandSinkConfig, JsonlSinkConfig, LogSinkConfig, WebhookSinkConfig

SINK_TYPES: tuple[Literal["log", "jsonl", "webhook", "command"], ...] = (
    "log",
    "jsonl",
    "webhook",
    "command",
)
AUTH_SCHEMES: tuple[Literal["basic", "bearer", "header"], ...] = ("basic", "bearer", "header")

CCV_STATUS_INTERVALS = {"AwaitingPayment": "2m", "Incomplete": "6h"}
STUCK_AFTER: dict[tuple[str, str], str] = {
    ("ccv", "AwaitingPayment"): "2d",
    ("ccv", "Incomplete"): "7d",
    ("ccv", "Screening"): "7d",
    ("ccv", "Processing"): "1d",
    ("ccnow", "pending"): "5d",
    ("ccnow", "paypal_hold"): "7d",
    ("ccnow", "vacation_hold"): "7d",
    ("ccnow", "preorder_hold"): "7d",
    ("ccnow", "getman_hold"): "7d",
    ("ccnow", "mark_shipped"): "3d",
    ("ccnow", "mark_canceled"): "3d",
}


def _sink_kind_keys() -> frozenset[str]:
    """Keys of one sink kind that others lack (a Secret field also has its `<key>_file`)."""
    common = {f.name for f in fields(LogSinkConfig)}
    own = [
        f for kind in (JsonlSinkConfig, WebhookSinkConfig, CommandSinkConfig) for f in fields(kind)
    ]
    return frozenset(
        key
        for f in own
        if f.name not in common
        for key in ((f.name, f"{f.name}_file") if f.type == "Secret" else (f.name,))
    )


# For "not a key of a jsonl sink" rather than "unknown key": the user picked the wrong kind.
SINK_KIND_KEYS = _sink_kind_keys()
