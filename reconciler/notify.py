"""Signed notification URLs: CCV calls them with no body, so the URL itself must say which
order changed, and carry an HMAC so that nobody can make us poll on their behalf."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Literal
from urllib.parse import quote

from .config import ReceiverConfig

Kind = Literal["order", "ref"]


def signature(secret: str, account: str, kind: Kind, value: str) -> str:
    """Return the URL-safe HMAC-SHA256 (128 bits) of one notification target."""
    msg = "\n".join(("ccv", account, kind, value)).encode()
    digest = hmac.new(secret.encode(), msg, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(secret: str, account: str, kind: Kind, value: str, given: str) -> bool:
    """Check a signature in constant time."""
    return hmac.compare_digest(signature(secret, account, kind, value), given)


def notification_url(
    receiver: ReceiverConfig,
    account: str,
    *,
    order_id: str | None = None,
    reference: str | None = None,
) -> str:
    """Return the URL to submit as a CCV order's `notificationUrl`."""
    kind: Kind = "order" if order_id is not None else "ref"
    value = order_id if order_id is not None else reference
    if value is None:
        raise ValueError("an order id or an external reference is required")
    sig = signature(receiver.secret.reveal(), account, kind, value)
    path = "/".join(("notify", "ccv", quote(account, safe=""), kind, quote(value, safe=""), sig))
    return f"{receiver.public_url}/{path}"
