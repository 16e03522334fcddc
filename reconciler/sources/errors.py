"""Typed failures of a provider source: any of them means the answer changed nothing."""

from __future__ import annotations

# The reason of an account's failure of its key refused (CCV's 401 for the account).
KEY_REFUSED = "http 401"


class SourceError(Exception):
    """A source could not be asked; the pass for that account stops and nothing changes."""

    reason = "unavailable"


class SourceUnavailable(SourceError):
    """Maintenance, server errors or timeouts after retries, connection failures."""


class CircuitOpen(SourceUnavailable):
    """A client's circuit breaker opened: a run of outage failures in a row stopped its pass,
    the orders after them left unasked (whether the account is down is its caller's to say).
    `asked`: the orders whose failures opened it and were not handed on (held by reference:
    checks in flight may add theirs)."""

    def __init__(self, message: str, asked: list[str]) -> None:
        super().__init__(message)
        self.asked = asked


class RestAsked(SourceUnavailable):
    """The provider asked the account to wait (a 429 or 503 whose Retry-After is longer than a
    request's retries wait), or it still rests for it (sources/rest.py): no request was sent
    again, and no read of the account is until `until` (the account's clock). The account's
    failure, not an order's: one order's check must not ask every other one meanwhile.
    `held`: the rest kept the request back (none was sent), not a provider's answer."""

    def __init__(self, message: str, until: float, *, held: bool = True) -> None:
        super().__init__(message)
        self.until = until
        self.held = held


class AuthenticationFailed(SourceError):
    """The provider refused our credentials (401/403); retrying only makes it worse."""

    reason = "authentication"


class OrderRefused(AuthenticationFailed):
    """CCV answered 401 about one order (`order_id`, asked at `asked`, epoch seconds) before any
    answer of the pass showed the key accepted: a bad key, or that order's own refusal (whether
    the account's other orders answer says which; the caller's to ask)."""

    def __init__(self, message: str, order_id: str, asked: float | None) -> None:
        super().__init__(message)
        self.order_id = order_id
        self.asked = asked


class ProtocolError(SourceError):
    """The answer is not the provider's protocol (an HTML page, garbage, a wrong shape)."""

    reason = "protocol"


class AnswerTooLarge(ProtocolError):
    """The provider answered with more than the caller reads: it got the request (`status`:
    the answer's HTTP status). A write whose answer this is may have been run."""

    def __init__(self, status: int, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.status = status
        # Where the answer pointed (absolute), when the caller read it: a write's answer may
        # say where the thing it made is even when its body is not read.
        self.location: str | None = None


class UndecodableAnswer(ProtocolError):
    """The provider answered in a Content-Encoding that cannot be decoded (`br` without Brotli,
    a gzip that is none): it got the request, and a write whose answer this is may have been
    run. Not a connection's failure, nor an outage. `status`: the answer's HTTP status, None
    when aiohttp refused it with its headers."""

    def __init__(self, encoding: str, status: int | None) -> None:
        super().__init__(f"answer in a content-encoding that cannot be decoded ({encoding})")
        self.status = status
        self.location: str | None = None  # as AnswerTooLarge's
