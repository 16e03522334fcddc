"""The integration API's edges: the bearer-token guard, errors as JSON, and the checks of what
a request names (its JSON body, a source, an account, an order id)."""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Middleware

from .. import strict_json
from ..config.names import NoAccount, chosen_account
from ..logs import fields
from ..metrics import Metrics
from ..model import (
    SOURCES,
    InvalidOrderId,
    OrderKey,
    Source,
    clipped,
    normalize_order_id,
    reference_problem,
)
from ..poller.unconfigured import unsettled_writes
from ..redact import GIVEN_SECRET, SecretForms, given_secrets, holds_secret
from ..sources.codings import BodyTooLarge, BodyUnreadable
from ..store import Store, StoreError
from ..store.health import is_unusable
from ..writes.ccnow_actions import ActionSender
from ..writes.submit import Submitter
from ..writes.submit_body import BadSubmission
from .api_auth import TokenRefusals
from .connections import HEADER_TIMEOUT_S, ExpectScreen
from .http import BodyTooSlow, json_error, read_body
from .stopping import Stopping, stopping_answer

log = logging.getLogger("reconciler.api")

Refresh = Callable[[OrderKey], Awaitable[bool]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Route name -> the query parameters it takes (api.QUERY_PARAMETERS).
QueryNames = Mapping[str, frozenset[str]]


class BadRequest(Exception):
    """Input we answer with a JSON 4xx that names the field."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers  # the answer's own (`Reconciler-Pricing-Warnings`), if any
        self.extra = extra

    @property
    def shown_field(self) -> str | None:
        """The field as the answer and the log name it: a body's unknown key may be of any
        length, and is named, not echoed whole."""
        return None if self.field is None else clipped(self.field, quoted=False)

    def unechoed(self, secrets: SecretForms | None) -> BadRequest:
        """Return this refusal, or one that names and quotes nothing when what it would echo
        (a body's key, a query parameter's name) holds one of the config's secrets."""
        if not (holds_secret(self.field or "", secrets) or holds_secret(self.message, secrets)):
            return self
        said = f"a name given (a field, a parameter) {GIVEN_SECRET}"
        return BadRequest(self.status, said, headers=self.headers)

    def response(self) -> web.Response:
        """Return the JSON error answer."""
        field = self.shown_field
        named: dict[str, object] = {} if field is None else {"field": field}
        return json_error(
            self.status, self.message, headers=self.headers, extra={**named, **self.extra}
        )


@dataclass(frozen=True)
class ApiDeps:
    """What the API works with: the writer's store, a read-only one, and the daemon's calls."""

    store: Store
    reader: Store
    submitter: Submitter
    refresh: Refresh
    accounts: Mapping[Source, Sequence[str]]
    watched: Mapping[tuple[str, str], float]  # Config.watch_settled: an order's watch is over
    actions: ActionSender | None = None
    # The config's secrets, masked in what CCV answers before it is passed back (CCV may echo
    # the API key it was sent).
    secrets: Sequence[str] = ()
    # How long a body may take to arrive: the listener's header timeout (ConnectionLimits). A
    # stalled body would keep its connection busy, and the cap sheds new ones while all are.
    body_timeout_s: float = HEADER_TIMEOUT_S
    metrics: Metrics | None = None  # the daemon's: counts the requests refused for the token

    @functools.cached_property
    def secrets_search(self) -> SecretForms | None:
        """The secrets as one search: an order id or reference given that holds one is refused."""
        return given_secrets(self.secrets)

    def refuse_secret(self, value: str, field: str) -> None:
        """Refuse (422) an order id or reference given that holds one of the config's secrets."""
        if holds_secret(value, self.secrets_search):
            raise BadRequest(422, GIVEN_SECRET, field)


def routing_error(exc: web.HTTPException) -> web.Response:
    """Return the router's own 404 / 405 in JSON, like every other answer."""
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return json_error(exc.status, exc.reason.lower(), headers=headers)


def body_too_large(limit: int) -> web.Response:
    """Return the 413 of a body over `limit` bytes."""
    return BadRequest(413, f"body larger than {limit} bytes", "$").response()


def expect_screen(
    refusals: TokenRefusals,
    limit: int,
    router: web.UrlDispatcher,
    stopping: Stopping,
    known: QueryNames | None = None,
    secrets: SecretForms | None = None,
) -> ExpectScreen:
    """Return the screen that answers `Expect: 100-continue` with the refusal the request
    would get (401, 503 once the stop began, 417, 413, 404, 405, 400 for a query parameter the
    route does not take) instead of inviting a body that would not be read."""

    async def screen(request: web.Request) -> web.StreamResponse | None:
        if request.version < HttpVersion11:
            return None  # HTTP/1.0 has no 100 Continue: the expectation is ignored (RFC 9110)
        refusal = refusals.refusal(request)
        if refusal is None:
            refusal = refused_by_stop(request, stopping)
        if refusal is not None:
            return refusal
        if request.headers.get("Expect", "").lower() != "100-continue":
            return json_error(417, "expectation failed")
        if request.content_length is not None and request.content_length > limit:
            return body_too_large(limit)
        match = await router.resolve(request)
        if match.http_exception is not None:
            return routing_error(match.http_exception)
        try:
            if known is not None:
                unknown_query(match.route.name, request.query, known)
        except BadRequest as exc:
            return exc.unechoed(secrets).response()
        return None

    return screen


def refused_by_stop(request: web.Request, stopping: Stopping | None) -> web.Response | None:
    """Return the 503 of a request that came once the stop began (nothing is done for it, on a
    connection taken before the stop: stopping.py), or None before."""
    if stopping is None or not stopping.began:
        return None
    log.info("api.refused", extra=fields(reason="stopping", method=request.method))
    return stopping_answer()


def guard(
    refusals: TokenRefusals,
    secrets: SecretForms | None = None,
    unusable: Callable[[sqlite3.Error], StoreError] | None = None,
    stopping: Stopping | None = None,
    known: QueryNames | None = None,
) -> Middleware:
    """Return the middleware that refuses a request without the token before anything else,
    then every request once `stopping` began, and turns errors into JSON; a refusal that would
    echo one of `secrets` echoes nothing. `unusable` records an SQLite error that says the
    database cannot be used (Store.unusable) where a statement of its own met it, outside the
    store's guarded methods. `known`: the query parameters each route takes (others: 400)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The token first, as ever: a caller without it is told nothing, the stop included.
        refusal = refusals.refusal(request)
        if refusal is None:
            refusal = refused_by_stop(request, stopping)
        if refusal is not None:
            return refusal
        try:
            if known is not None:
                unknown_query(request.match_info.route.name, request.query, known)
            repeated(request)
            return await handler(request)
        except BadRequest as exc:
            shown = exc.unechoed(secrets)
            log.debug(
                "api.rejected",
                extra=fields(method=request.method, status=shown.status, field=shown.shown_field),
            )
            return shown.response()
        except BadSubmission as exc:
            return BadRequest(exc.status, exc.message, exc.field).unechoed(secrets).response()
        except web.HTTPException as exc:
            return routing_error(exc)
        except StoreError:
            # Logged once by the store's health when it started failing (a full disk); the
            # API's reads share the writer's health (Daemon.start_api).
            return database_unusable()
        except Exception as exc:
            if unusable is not None and isinstance(exc, sqlite3.Error) and is_unusable(exc):
                unusable(exc)  # its store.failing line, and a damaged file's stop (74)
                return database_unusable()
            log.error("api.failed", exc_info=True, extra=fields(method=request.method))
            return json_error(500, "internal error")

    return middleware


def database_unusable() -> web.Response:
    """Return the 503 of a database that cannot be used (a full disk, a damaged page)."""
    return json_error(
        503, "the database cannot be used; try again later", headers={"Retry-After": "5"}
    )


def unknown_query(route: str | None, query: Mapping[str, str], known: QueryNames) -> None:
    """Refuse (400) a query parameter the route `route` (its name) does not take: a typo
    (`?afer=5`) read as nothing answered from the feed's start, and a consumer got every
    event again. A route without a name (the router's 404 / 405) takes none to refuse."""
    if route is None:
        return
    taken = known.get(route, frozenset())
    for name in query:
        if name not in taken:
            raise BadRequest(400, f"unknown query parameter: {clipped(name, quoted=False)}")


def account_given(request: web.Request, doc: Mapping[str, object]) -> object:
    """Return what a request names as its account: `"account"` in its body, or `?account=` in
    its URL; 422 naming both when both are given and differ (either may be the one meant)."""
    query = request.query.get("account")
    body = doc.get("account")
    if body is None:  # `"account": null` names none, as its absence does
        return query
    if query is not None and body != query:
        said = clipped(body) if isinstance(body, str) else kind_of(body)
        raise BadRequest(
            422,
            f'the body\'s "account" ({said}) and ?account= ({clipped(query)}) differ: '
            "name the account once",
            "account",
        )
    return body


def kind_of(value: object) -> str:
    """What a JSON value that is no string is, as an error names it (not echoed)."""
    return "null" if value is None else type(value).__name__


def repeated(request: web.Request) -> None:
    """Refuse (400) a query parameter given twice: the API reads the first, a JSON body's key
    given twice would be read as the last, and a client may mean either."""
    for name in request.query:
        if len(request.query.getall(name)) > 1:
            raise BadRequest(400, "given more than once", name)


async def json_body(request: web.Request, limit: int, *, timeout_s: float) -> dict[str, object]:
    """Return the request's JSON body, an object; 413 above the limit, 408 when it has not
    arrived within `timeout_s`, 400 when it is not JSON or no object (every call's body is)."""
    try:
        raw = await read_body(request, limit, timeout_s=timeout_s)
    except BodyTooLarge:
        raise BadRequest(413, f"body larger than {limit} bytes", "$") from None
    except BodyTooSlow:
        raise BadRequest(408, f"the body did not arrive within {timeout_s:g} s", "$") from None
    except BodyUnreadable:
        raise BadRequest(400, "the body could not be read", "$") from None
    try:
        document = strict_json.given(raw)
    except (strict_json.NotExact, strict_json.RepeatedKey) as exc:
        raise BadRequest(400, str(exc), "$") from None
    except strict_json.NotJSON as exc:
        raise BadRequest(400, f"malformed JSON: {exc}", "$") from None
    if not isinstance(document, dict):
        raise BadRequest(400, "the body must be a JSON object", "$")
    return document


def source_named(raw: object) -> Source:
    """Return the source `raw` names; 422 otherwise."""
    for source in SOURCES:
        if raw == source:
            return source
    raise BadRequest(422, f"unknown source (one of {', '.join(SOURCES)})", "source")


def account_named(
    accounts: Sequence[str], source: Source, raw: object, field: str = "account"
) -> str:
    """Return the account `raw` names, or the only one when it names none (config/names.py);
    422 otherwise."""
    if raw is not None and not isinstance(raw, str):
        raise BadRequest(422, "must be a string", field)
    chosen = chosen_account(accounts, raw)
    if chosen is NoAccount.NONE:
        raise BadRequest(422, f"no {source} account is configured", "source")
    if chosen is NoAccount.SEVERAL:
        raise BadRequest(422, f"several {source} accounts: name one", field)
    if chosen is NoAccount.UNKNOWN:
        raise BadRequest(422, f"no {source} account of that name", field)
    return chosen


async def unconfigured_with_writes(deps: ApiDeps, source: Source, raw: object) -> str | None:
    """Return the account `raw` names when the config no longer names it and the store holds
    uncertain writes of it, which a person's word settles without credentials; else None."""
    if not isinstance(raw, str) or raw in deps.accounts.get(source, ()):
        return None
    uncertain, _ = (await unsettled_writes(deps.reader)).get((source, raw), (0, 0))
    return raw if uncertain else None


def unknown_field(name: str) -> BadRequest:
    """Return the 422 of a body's field that the request does not take."""
    return BadRequest(422, f"{clipped(name)}: unknown field", name)


def order_id_named(deps: ApiDeps, source: Source, raw: object) -> str:
    """Return the normalised order id; 422 when it is not one of this source, or holds one of
    the config's secrets (refused first: the refusal of a malformed id quotes it)."""
    if not isinstance(raw, str):
        raise BadRequest(422, "must be a string", "order_id")
    deps.refuse_secret(raw, "order_id")
    try:
        return normalize_order_id(source, raw)
    except InvalidOrderId as exc:
        raise BadRequest(422, str(exc), "order_id") from None


def reference_named(deps: ApiDeps, raw: object, field: str, *, tracked: bool = False) -> str:
    """Return an external reference a request names, taken as stored (as `track --ref`: one
    an older release stored settles); 422 when it is not a string, cannot be followed
    (`tracked`: see `reference_problem`), or holds one of the config's secrets (refused first:
    the refusal of a malformed one quotes it)."""
    if not isinstance(raw, str):
        raise BadRequest(422, "must be a string, an external reference", field)
    deps.refuse_secret(raw, field)
    if problem := reference_problem(raw, given=False, tracked=tracked):
        raise BadRequest(422, problem, field)
    return raw
