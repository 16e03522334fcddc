"""Events as CloudEvents 1.0 (structured mode), with ids that are stable across redeliveries."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .model import EventType, OrderKey, Severity, Source

# Ids are uuid5 over the store's own id and the transition's place in the order's history, so a
# transition that is found again after a crash gets the id it would have had the first time.
_NAMESPACE = uuid.UUID("6f1c2a4e-8f0b-4d57-9a8e-2c1d3b5e7a90")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def event_id(store_id: str, *parts: object) -> str:
    """Return the deterministic id of an event, from the store id and what makes it unique.

    This is uuid5(_NAMESPACE, name), computed without building UUID objects: it runs once
    per event on the hot path of a catch-up.
    """
    name = "/".join([store_id, *map(str, parts)]).encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def iso_time(ts: float) -> str:
    """Render epoch seconds as RFC 3339 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


@dataclass(frozen=True, slots=True)
class Event:
    """One event as stored in the outbox."""

    id: str
    type: EventType
    time: float
    source: Source
    account: str
    order_id: str | None
    severity: Severity
    data: dict[str, Any]

    def cloudevent(self) -> dict[str, Any]:
        """Return the CloudEvents 1.0 structured-mode object."""
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "type": self.type.value,
            "source": f"reconciler/{self.source}/{self.account}",
        }
        if self.order_id is not None:
            event["subject"] = self.order_id
        event["time"] = iso_time(self.time)
        event["datacontenttype"] = "application/json"
        event["data"] = self.data
        return event

    def body(self) -> bytes:
        """Return the serialized CloudEvent, the exact bytes every sink receives."""
        return json.dumps(self.cloudevent(), ensure_ascii=False, separators=(",", ":")).encode()


def order_event(
    type: EventType,
    key: OrderKey,
    *,
    id: str,
    time: float,
    severity: Severity,
    external_reference: str | None,
    previous_status: str | None,
    status: str | None,
    end_state: bool,
    via: str,
    unknown_status: bool = False,
    **extra: Any,
) -> Event:
    """Return an order event; its `data` has the fields of the contract, in its order."""
    data: dict[str, Any] = {
        "source": key.source,
        "account": key.account,
        "order_id": key.order_id,
        "external_reference": external_reference,
        "previous_status": previous_status,
        "status": status,
        "end_state": end_state,
        "severity": severity,
        "via": via,
        "unknown_status": unknown_status,
        **extra,
    }
    return Event(id, type, time, key.source, key.account, key.order_id, severity, data)
