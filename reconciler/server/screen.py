"""Which requests the receiver takes, told from the request line alone (path, method, account,
signature or token) before any body is read: also before a `100 Continue`, so a refused request
is not invited to upload a body that would be thrown away."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from aiohttp import web

from ..config import ReceiverConfig, Secret
from ..model import InvalidOrderId, validate_ccv_id
from ..notify import Kind, verify
from .notification_request import (
    CCNowPath,
    CCVPath,
    decode_segment,
    parse_notify_path,
)

# notify.signature: 16 bytes, URL-safe base64 without padding.
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{22}")
_KINDS: Final[Mapping[str, Kind]] = {"order": "order", "ref": "ref"}

MESSAGES: Final[Mapping[int, str]] = {
    400: "bad request",
    404: "not found",
    405: "method not allowed",
    408: "request timeout",
    413: "body too large",
    417: "expectation failed",
    503: "busy",
}


class Rejected(Exception):
    """A request we answer with a 4xx (or 503); `reason` is a short word for the debug log."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        source: str | None = None,
        account: str | None = None,
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.source = source
        self.account = account
        self.headers = dict(headers or {})
        self.message = message or MESSAGES.get(status, "rejected")  # the answer's `error`


@dataclass(frozen=True, slots=True)
class CCVCall:
    """A CCV notification whose URL is signed: what it names, and which secret signed it."""

    account: str
    kind: Kind
    value: str
    signed_with: str  # "secret" or "previous_secret"

    source = "ccv"


@dataclass(frozen=True, slots=True)
class CCNowCall:
    """A CCNow notification with the account's token."""

    account: str

    source = "ccnow"


Local = Literal["/healthz", "/metrics"]


class Screen:
    """Tell a request the receiver takes from one it refuses (Rejected)."""

    def __init__(
        self,
        receiver: ReceiverConfig,
        ccv_accounts: Sequence[str],
        ccnow_tokens: Mapping[str, Secret | None],
    ) -> None:
        self.receiver = receiver
        self.ccv_accounts = frozenset(ccv_accounts)
        self.ccnow_tokens = dict(ccnow_tokens)
        self._tokens = [t for t in ccnow_tokens.values() if t is not None]

    def __call__(self, request: web.BaseRequest) -> Local | CCVCall | CCNowCall:
        """Return what a request asks for; raise Rejected when it is refused."""
        path = request.raw_path.partition("?")[0]
        # Exact paths only: probes and Prometheus ask locally; a public proxy forwarding a
        # prefix does not expose them.
        if path in ("/healthz", "/metrics"):
            if request.method not in ("GET", "HEAD"):
                raise Rejected(405, "method", headers={"Allow": "GET, HEAD"})
            return "/healthz" if path == "/healthz" else "/metrics"
        target = parse_notify_path(path)
        if target is None:
            raise Rejected(404, "no_route")
        source = "ccv" if isinstance(target, CCVPath) else "ccnow"
        if request.method != "POST":
            raise Rejected(405, "method", source=source, headers={"Allow": "POST"})
        if isinstance(target, CCVPath):
            return self.ccv(target)
        return self.ccnow(target)

    def ccv(self, target: CCVPath) -> CCVCall:
        """Take a CCV path of a configured account, signed by a configured secret."""
        account, raw_kind, value = (
            decode_segment(target.account),
            target.kind,
            decode_segment(target.value),
        )
        kind = _KINDS.get(raw_kind)
        if account is None:
            raise Rejected(404, "unknown_account", source="ccv")
        if account not in self.ccv_accounts:
            # A URL this receiver signed, for an account since renamed or removed: CCV keeps
            # calling it, and every call is lost. Junk otherwise.
            if (
                kind is not None
                and value is not None
                and self.signed_with(account, kind, value, target.sig)
            ):
                raise Rejected(404, "account_not_configured", source="ccv", account=account)
            raise Rejected(404, "unknown_account", source="ccv")
        if kind is None or value is None:
            raise Rejected(404, "malformed", source="ccv")
        signed_with = self.signed_with(account, kind, value, target.sig)
        if signed_with is None:
            raise Rejected(404, "bad_signature", source="ccv", account=account)
        if kind == "order":
            try:
                validate_ccv_id(value)
            except InvalidOrderId:
                raise Rejected(404, "bad_order_id", source="ccv") from None
        return CCVCall(account, kind, value, signed_with)

    def signed_with(self, account: str, kind: Kind, value: str, sig: str) -> str | None:
        """Which configured secret signed this URL ("secret", "previous_secret"), or None."""
        # compare_digest refuses non-ASCII text, so the shape is checked first.
        if not _SIGNATURE.fullmatch(sig):
            return None
        for key, secret in (
            ("secret", self.receiver.secret),
            ("previous_secret", self.receiver.previous_secret),
        ):
            if secret is not None and verify(secret.reveal(), account, kind, value, sig):
                return key
        return None

    def _a_token(self, token: str) -> bool:
        """Whether `token` is one of the configured notification tokens (constant time each)."""
        given = token.encode("utf-8")
        return any([hmac.compare_digest(given, t.reveal().encode("utf-8")) for t in self._tokens])

    def ccnow(self, target: CCNowPath) -> CCNowCall:
        """Take a CCNow path of an account with a notification token, carrying that token."""
        account, token = decode_segment(target.account), decode_segment(target.token)
        expected = self.ccnow_tokens.get(account) if account is not None else None
        if account is None or expected is None:
            if account is not None and token is not None and self._a_token(token):
                # A configured token, under an account's old name (CCNow still calls the URL of
                # an account since renamed or removed) or under one given none (the token went
                # to CCNow for it, not into this config). Any other token: a scanner's guess.
                reason = (
                    "no_notification_token"
                    if account in self.ccnow_tokens
                    else "account_not_configured"
                )
                raise Rejected(404, reason, source="ccnow", account=account)
            raise Rejected(404, "unknown_account", source="ccnow")
        if token is None or not hmac.compare_digest(
            token.encode("utf-8"), expected.reveal().encode("utf-8")
        ):
            raise Rejected(404, "bad_token", source="ccnow", account=account)
        return CCNowCall(account)
