"""Words shared by every module: order keys, provider statuses, observations, event types."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal, NamedTuple

Source = Literal["ccv", "ccnow"]
SOURCES: tuple[Source, ...] = ("ccv", "ccnow")

Severity = Literal["info", "warning", "error"]
Via = Literal["poll", "catch-up", "notification", "action"]

# The check time of orders we will not poll again (end states, settled orders past their watch
# period). SQL writes it as a literal (a REAL past the largest double is SQLite's infinity): a
# bound infinity is traced as `Inf`, which no statement read back from the trace can hold
# (tests/store/test_store_scale explains the statements it traced).
NEVER_SQL = "9e999"
NEVER = float(NEVER_SQL)


class EventType(str, enum.Enum):
    """The event types of the interface contract."""

    DISCOVERED = "order.discovered"
    STATUS_CHANGED = "order.status_changed"
    NOT_FOUND = "order.not_found"
    STUCK = "order.stuck"
    SOURCE_FAILED = "source.failed"
    SOURCE_RECOVERED = "source.recovered"
    # A CCV submit whose answer was lost, or named no order reconciler can follow: it is never
    # re-sent; a notification (not for the latter) or a person settles it
    # (writes/submit_outcome.py).
    SUBMIT_UNCERTAIN = "order.submit_uncertain"
    # CCNow order actions (writes/ccnow_actions.py): CCNow's answer, or its loss for an
    # `adjust`, which is never re-sent.
    ACTION_SUCCEEDED = "order.action_succeeded"
    ACTION_REFUSED = "order.action_refused"
    ACTION_UNCERTAIN = "order.action_uncertain"
    ACTION_UNCONFIRMED = "order.action_unconfirmed"  # a read says a ship or cancel did not take
    # The close of an uncertain case, for an alert on the uncertain event to be closed by:
    # a CCNow action a person settled (`ccnow resolve`), a CCV submit a notification or a
    # `track --ref` settled.
    ACTION_RESOLVED = "order.action_resolved"
    SUBMIT_RESOLVED = "order.submit_resolved"


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """What a provider status word means to us."""

    severity: Severity
    end_state: bool = False
    # Done for now, but not final in practice, so watched daily for `watch_settled`: CCNow
    # `completed` / `refunded` (a refund or chargeback may follow), CCV `Failed` ("action is
    # required by a CCV employee": a `Completed` or `Canceled` may follow).
    settled: bool = False
    known: bool = True


# One table for both providers: (source, status word) -> meaning.
STATUSES: Final[Mapping[tuple[Source, str], StatusInfo]] = {
    # CCV boarding API, orderStatus
    ("ccv", "Processing"): StatusInfo("info"),
    ("ccv", "Incomplete"): StatusInfo("info"),
    ("ccv", "AwaitingPayment"): StatusInfo("info"),
    ("ccv", "Screening"): StatusInfo("info"),
    ("ccv", "New"): StatusInfo("info"),
    ("ccv", "ErpInProgress"): StatusInfo("info"),
    ("ccv", "FulfillmentInProgress"): StatusInfo("info"),
    ("ccv", "FulfillmentDone"): StatusInfo("info"),
    ("ccv", "Completed"): StatusInfo("info", end_state=True),
    ("ccv", "Closed"): StatusInfo("warning", end_state=True),
    ("ccv", "Canceled"): StatusInfo("warning", end_state=True),
    ("ccv", "Failed"): StatusInfo("error", settled=True),
    # CCNow Order Update API status codes
    ("ccnow", "received"): StatusInfo("info"),
    ("ccnow", "paypal_hold"): StatusInfo("info"),
    ("ccnow", "processing"): StatusInfo("info"),
    ("ccnow", "vacation_hold"): StatusInfo("info"),
    ("ccnow", "preorder_hold"): StatusInfo("info"),
    ("ccnow", "getman_hold"): StatusInfo("info"),
    ("ccnow", "pending"): StatusInfo("info"),
    ("ccnow", "mark_canceled"): StatusInfo("warning"),
    ("ccnow", "canceled"): StatusInfo("warning", end_state=True),
    ("ccnow", "declined"): StatusInfo("error", end_state=True),
    ("ccnow", "rejected"): StatusInfo("error", end_state=True),
    ("ccnow", "mark_shipped"): StatusInfo("info"),
    ("ccnow", "completed"): StatusInfo("info", settled=True),
    ("ccnow", "test"): StatusInfo("info", end_state=True),
    ("ccnow", "refunded"): StatusInfo("warning", settled=True),
    ("ccnow", "chargeback"): StatusInfo("error", end_state=True),
}

UNKNOWN_STATUS = StatusInfo("warning", known=False)


def status_info(source: str, status: str) -> StatusInfo:
    """Return the meaning of a status word; unknown words (and sources) are warnings, never end
    states."""
    # A str, not Source: /metrics' labels and retention's rows come from the store as text.
    return STATUSES.get((source, status), UNKNOWN_STATUS)  # type: ignore[arg-type]


def known_statuses(source: Source) -> list[str]:
    """Return the documented status words of a provider, in lifecycle order."""
    return [status for (src, status) in STATUSES if src == source]


_BLANKS = re.compile(r"[ \t]+")  # what separates a CCNow status's words (ccnow_answer.BLANKS)


def same_status(one: str | None, other: str | None) -> bool:
    """Whether two CCNow statuses are one: words CCNow does not document, written in another
    case or with other blanks between them (`On  Hold`, `on<TAB>hold`), are the same words (an
    endpoint that flips either would raise a change every poll; each is kept as first seen)."""
    if one is None or other is None:
        return one is other
    return _BLANKS.split(one.lower()) == _BLANKS.split(other.lower())


# The settled words of each provider, read from the table above: the one list of them (the SQL
# that names them, store/retention.py, is checked against it by a test).
SETTLED: Final[Mapping[Source, tuple[str, ...]]] = {
    source: tuple(s for s in known_statuses(source) if STATUSES[(source, s)].settled)
    for source in SOURCES
}


def settled_at(last_changed: float | None, tracked_at: float | None) -> float:
    """Return when an order's watch began: its last change, else when it was tracked (SQL
    `coalesce(last_changed, tracked_at, 0)`, the expression of migration 18's index)."""
    if last_changed is not None:
        return last_changed
    return tracked_at if tracked_at is not None else 0.0


def unwatched(source: Source, status: str | None, since: float, *, settled_since: float) -> bool:
    """Whether an order is settled and no longer watched: its status is a settled word and its
    watch began (`since`, `settled_at`) at or before `settled_since`, which is now minus its
    account's `watch_settled`, or now for an account the config does not name (nobody watches
    its orders). The one rule: such an order is never checked again, whatever its last check
    answered, no catch-up asks it, it is not open, and retention prunes it as an ended one.
    Its SQL twins are store/order_sql.py `unwatched` and `unwatched_any`."""
    return status in SETTLED.get(source, ()) and since <= settled_since


def watch_from(
    watched: Mapping[tuple[str, str], float], source: Source, account: str, now: float
) -> float:
    """Return the `settled_since` of `unwatched` for an account's orders: now minus its
    `watch_settled` (`watched`: Config.watch_settled), or now for an account the config does not
    name. Its SQL twin is the CASE of store/order_sql.py `unwatched_any`."""
    return now - watched.get((source, account), 0.0)


# --- amounts -----------------------------------------------------------------------------------

# USD as CCNow takes it: digits, at most two decimals (a float 100.0 reads "100.0")
_USD = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,2})?", re.ASCII)


def usd_amount(text: str) -> Decimal | None:
    """Return `text` as an amount in USD as CCNow takes it, or None when it is not one."""
    return Decimal(text) if _USD.fullmatch(text) else None


# --- external references ----------------------------------------------------------------------

# One rule wherever a reference comes in (CCV's answers, `track --ref`, the API, a submit): what
# CCV may report can always be tracked, and what is tracked fits a URL path, a log line and JSON.
EXTERNAL_REFERENCE_MAX_LENGTH = 256


def reference_problem(ref: str, *, given: bool = True, tracked: bool = False) -> str | None:
    """Why an external reference cannot be followed or put into a notification URL, or None.
    `given`: a new one given to reconciler (a submit, `notification-url --ref`), which must not
    begin or end with white space: an HTTP header drops it, so the submit would be named, and
    tracked, under another reference than the one it was made with. `given=False`: one taken as
    stored or as CCV holds it (CCV's answers, `track --ref` or a track file's field, POST
    /orders, `ccv resolve`, the API's lookups). `tracked`: one `track` or POST /orders follows,
    which is refused though stored ones are not when it is white space alone: no submit was made
    with it and no notification URL can carry it (`notification-url` refuses it)."""
    if not ref:
        # The receiver refuses an empty path segment: the URL would never be accepted.
        return "an external reference must not be empty"
    if len(ref) > EXTERNAL_REFERENCE_MAX_LENGTH:
        return f"an external reference must be at most {EXTERNAL_REFERENCE_MAX_LENGTH} characters"
    if given and ref != ref.strip():
        return f"an external reference must not begin or end with white space: {clipped(ref)}"
    if not ref.isprintable():
        # A lone surrogate (JSON "\udcff") is not printable either: no database or log holds it.
        return (
            f"an external reference must not hold control or invisible characters: {clipped(ref)}"
        )
    if ref in (".", ".."):
        # A URL path segment of its own: HTTP clients resolve it away, and CCV's calls would
        # reach another path than the one signed.
        return f"an external reference must not be {ref!r} (a URL path would drop it)"
    if tracked and not ref.strip():
        return f"an external reference must not be white space alone: {clipped(ref)}"
    return None


# What an error message quotes of an input, at most: an id or a key given is echoed so that it
# can be found, but a megabyte of it would come back as a megabyte of error.
SHOWN_INPUT_MAX = 100


def clipped(raw: str, limit: int = SHOWN_INPUT_MAX, *, quoted: bool = True) -> str:
    """Return `raw` as an error quotes it: repr()'d (`quoted`: in an error's sentence) or as
    it is (a field named on its own), cut with an ellipsis past `limit`. The one place that
    cuts what was given."""
    shown = repr if quoted else str
    return shown(raw) if len(raw) <= limit else shown(raw[:limit]) + "\u2026"


# --- order ids ------------------------------------------------------------------------------

# Ids are ASCII: [0-9], not \d, which matches other scripts' digits (`１２３`, `٣٩٦`). The
# pattern is the answer parser's too, which finds ids in CCNow's words (`hyphenated_match`).
CCNOW_ID_PATTERN = r"([0-9]{3})-?([0-9]{2})-?([0-9]{4})"
_CCNOW_ID = re.compile(CCNOW_ID_PATTERN, re.ASCII)
CCV_ID_MAX_LENGTH = 128
# Printable ASCII without space: a BOM, zero-width or bidirectional character pasted from a
# spreadsheet would otherwise become part of the id.
_CCV_ID_ALPHABET = re.compile(r"[!-~]+", re.ASCII)
_CCV_ID_FORBIDDEN = re.compile(r"[/\\?#%]", re.ASCII)


class InvalidOrderId(ValueError):
    """An order id that we refuse to follow or to put into a URL."""


def ccnow_id(text: str) -> str | None:
    """Return `text` as a CCNow order id in its hyphenated form `NNN-NN-NNNN`, or None."""
    match = _CCNOW_ID.fullmatch(text)
    return None if match is None else hyphenated_match(match)


def hyphenated_match(match: re.Match[str]) -> str:
    """Return the CCNow order id a match of CCNOW_ID_PATTERN found, hyphenated."""
    return "-".join(match.groups()[:3])


def normalize_ccnow_id(raw: str) -> str:
    """Return a CCNow order id in its hyphenated form `NNN-NN-NNNN`."""
    order_id = ccnow_id(raw.strip())
    if order_id is None:
        raise InvalidOrderId(
            f"not a CCNow order id (nine digits, hyphens optional): {clipped(raw)}"
        )
    return order_id


def validate_ccv_id(raw: str) -> str:
    """Return a CCV order id that is safe as one URL path segment."""
    if not raw or len(raw) > CCV_ID_MAX_LENGTH:
        raise InvalidOrderId(
            f"CCV order id must be 1 to {CCV_ID_MAX_LENGTH} characters: {clipped(raw)}"
        )
    if not _CCV_ID_ALPHABET.fullmatch(raw):
        raise InvalidOrderId(
            f"CCV order id must be printable ASCII without spaces (a BOM, zero-width or "
            f"bidirectional character?): {clipped(raw)}"
        )
    if raw in (".", "..") or ".." in raw or _CCV_ID_FORBIDDEN.search(raw):
        raise InvalidOrderId(f"CCV order id has a forbidden character or sequence: {clipped(raw)}")
    return raw


def normalize_order_id(source: Source, raw: str) -> str:
    """Validate and normalize an order id of either provider."""
    return normalize_ccnow_id(raw) if source == "ccnow" else validate_ccv_id(raw)


# --- records ----------------------------------------------------------------------------------


class OrderKey(NamedTuple):
    """One followed order: provider, account name within our config, provider's order id.

    A tuple: it is hashed several times per check, and a tuple hashes in C.
    """

    source: Source
    account: str
    order_id: str


class Outcome(str, enum.Enum):
    """How one check of one order ended."""

    OK = "ok"
    NOT_FOUND = "not_found"
    FAILED = "failed"


class Observation(NamedTuple):
    """What one check of one order saw. `status` is set only when outcome is OK."""

    key: OrderKey
    outcome: Outcome
    status: str | None = None
    external_reference: str | None = None
    # For FAILED: a short machine word ("timeout", "http_500", "protocol", ORDER_ERROR, ...).
    reason: str | None = None
    # When the attempt that brought the answer was sent (wall clock, read just before it; a
    # retry's own time, not the first attempt's: what came back is as of the retry): an answer
    # asked before the one the snapshot holds is stale (diff.py). None: not known, never stale.
    asked: float | None = None
    # A CCNow action's answer line: when the post's answer came (its post sent at `asked`). A
    # read sent in between is no newer than it for that (diff.stale). None: a check's answer.
    answered: float | None = None
    # From a CCNow pending list read (poller/ccnow.py): it may lag behind queries (diff.lags).
    listed: bool = False


# The reason of a check the provider answered with an error of that order's own (a CCNow
# `ID error_message ...` line): the provider answered, about that order alone.
ORDER_ERROR = "order_error"
# The reasons of a check CCV answered about the order with a 2xx naming `orderStatus` (so it took
# the key) in words nothing may keep: that order's failure, and to its account's health an
# answer (`PassReport.answers`): counted as no answer, each pass holding only such orders asked
# the probe, whose failure failed the account until a good order recovered it, over and over.
UNUSABLE_STATUS = "unusable_status"
UNUSABLE_REFERENCE = "unusable_reference"
UNKEPT_ANSWERS = frozenset({UNUSABLE_STATUS, UNUSABLE_REFERENCE})
# The reason of a failed check that is an order found before answering "not found", not
# confirmed yet (diff.py): logged, counted in /metrics and in the order's failure streak.
NOT_FOUND_UNCONFIRMED = "not_found_unconfirmed"


class OrderState(NamedTuple):
    """One row of the snapshot: what we last saw of a followed order. Times are epoch seconds.

    Records made once or twice per check of every order are named tuples: they are built in C,
    several times faster than frozen dataclasses. `state._replace(...)` makes a changed copy.
    """

    key: OrderKey
    status: str | None = None  # None until the order was first seen
    external_reference: str | None = None
    first_seen: float | None = None
    last_changed: float | None = None
    last_checked: float | None = None
    end_state: bool = False
    not_found: bool = False
    failure_streak: int = 0
    # Number of events this order has produced so far; part of each event's stable id.
    version: int = 0
    next_check_at: float = 0.0
    interval_s: float | None = None  # current adaptive check interval
    stuck_version: int | None = None  # `version` at which order.stuck was raised
    tracked_at: float | None = None
    # When an order found before first answered "not found": it is reported once a later
    # check confirms it (a provider's passing hiccup must not look like a deleted order).
    missing_since: float | None = None
    # When the request whose answer the snapshot holds was sent (Observation.asked).
    asked_at: float | None = None


# What a pass asked: the status checks (CCV status requests, CCNow queries), the CCNow pending
# list, or the CCV probe (a made-up order id that proves the key is accepted).
HealthPart = Literal["checks", "pending_list", "probe"]
HEALTH_PARTS: tuple[HealthPart, ...] = ("checks", "pending_list", "probe")


@dataclass(frozen=True, slots=True)
class SourceState:
    """Health of one provider account, for source.failed / source.recovered."""

    source: Source
    account: str
    failing_parts: frozenset[HealthPart] = frozenset()
    failure_streak: int = 0
    episode: int = 0  # number of failure episodes so far; part of the event ids
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    # A failure made of the provider's own word about orders (`poller.health.Verdict.own_word`)
    # until the account recovers: that word at a probe then proves nothing.
    failed_on_own_word: bool = False
    # When its backoff period began: the failure that last advanced `failure_streak`. A failure
    # within the period moves `last_failure`, not this (else a notification's poll every 30 s
    # held a 60 s backoff shut for ever).
    backoff_from: float | None = None
    # The checks failed last of the key refused (a CCV 401 for the account): the probe, which
    # asks with that key, ends that failure when CCV takes it (`poller.health.next_health`).
    failed_on_key: bool = False
    rest_until: float | None = None  # no read sent before: a Retry-After (schedule.rests)

    @property
    def failing(self) -> bool:
        """Whether some part of the account is failing (see `reconciler.poller`)."""
        return bool(self.failing_parts)
