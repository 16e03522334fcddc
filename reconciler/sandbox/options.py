"""What the simulator is told (its options) and what it tells back (its counters)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from reconciler.config import is_loopback

from .faults import parse_faults


@dataclass(frozen=True)
class SandboxOptions:
    """What the simulator serves and how it behaves; validated at construction."""

    orders: int = 20  # CCV orders and CCNow orders each
    seed: int = 1
    speed: float = 1.0  # lifecycle speed multiplier: 1.0 = a step every ~4 s on average
    drop_notifications: float = 0.3  # share of CCV notification calls silently not made
    faults: str = ""  # SPEC, see parse_faults
    ccv_api_key: str = "t_sandbox"  # HTTP Basic, key as user, empty password
    ccnow_client_id: str = "sandbox"
    ccnow_password: str = "sandbox"
    advance: bool = True  # False: orders move only when told
    # where CCNow's server notifications go (None: none are sent), see Notifier
    ccnow_notification_url: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.orders <= 1_000_000:
            raise ValueError(f"orders must be from 0 to 1000000, not {self.orders}")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be a positive number, not {self.speed}")
        if not 0 <= self.drop_notifications <= 1:
            raise ValueError(
                f"drop_notifications must be from 0 to 1, not {self.drop_notifications}"
            )
        if not self.ccv_api_key or ":" in self.ccv_api_key:
            raise ValueError("ccv_api_key must be non-empty and without ':'")
        parse_faults(self.faults)
        if self.ccnow_notification_url is not None:
            check_notification_url(self.ccnow_notification_url, "ccnow_notification_url")


# (time, status) of every status an order had, the first the one it started in
History = list[tuple[float, str]]


@dataclass
class SandboxStats:
    """Counters of what the simulator served and did, and every order's status history."""

    ccv_requests: int = 0
    ccnow_requests: int = 0
    ccnow_max_batch: int = 0
    notifications_sent: int = 0
    notifications_dropped: int = 0
    ccnow_notifications_sent: int = 0
    transitions: int = 0
    pricing_set: int = 0  # pricing bodies accepted
    submits_unanswered: int = 0  # orders created by a submit the submit_timeout fault held
    # source -> order id -> [(time, status), ...], first entry the status the order started in
    history: dict[str, dict[str, History]] = field(default_factory=lambda: {"ccv": {}, "ccnow": {}})
    # (time, CCV order id, status) of every notification deliberately not made
    dropped: list[tuple[float, str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the stats as a JSON-ready dict."""
        return {
            "ccv_requests": self.ccv_requests,
            "ccnow_requests": self.ccnow_requests,
            "ccnow_max_batch": self.ccnow_max_batch,
            "notifications_sent": self.notifications_sent,
            "notifications_dropped": self.notifications_dropped,
            "ccnow_notifications_sent": self.ccnow_notifications_sent,
            "transitions": self.transitions,
            "pricing_set": self.pricing_set,
            "submits_unanswered": self.submits_unanswered,
            "history": {
                source: {oid: [[t, s] for t, s in hist] for oid, hist in orders.items()}
                for source, orders in self.history.items()
            },
            "dropped": [[t, oid, s] for t, oid, s in self.dropped],
        }


def check_notification_url(url: str, name: str = "notificationUrl") -> str:
    """Return `url` if CCV would call it: https, or http to a loopback host (sandbox only)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{name} is not a valid URL") from None
    if not host or parts.scheme not in ("http", "https"):
        raise ValueError(f"{name} must be an http(s) URL with a host")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(f"{name} must be https (http only for loopback hosts)")
    return url
