"""The words some keys take, and the defaults that are tables themselves. The keys a table may
hold are those its reader asks for (table.KeyCensus, Table.only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

SINK_TYPES: tuple[Literal["log", "jsonl", "webhook", "command"], ...] = (
    "log",
    "jsonl",
    "webhook",
    "command",
)
AUTH_SCHEMES: tuple[Literal["basic", "bearer", "header"], ...] = ("basic", "bearer", "header")

CCV_STATUS_INTERVALS: Final[Mapping[str, str]] = {"AwaitingPayment": "2m", "Incomplete": "6h"}
STUCK_AFTER: Final[Mapping[tuple[str, str], str]] = {
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
