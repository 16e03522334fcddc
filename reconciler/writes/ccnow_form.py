"""CCNow order actions: the checks of a request and the form CCNow takes (pure, no I/O).

A request becomes one command per order (`build`, `from_document`); commands become the
numbered fields of a post (`form`), batched so an `adjust` never shares a post (`batches`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Final, TypeVar
from urllib.parse import quote_plus

from reconciler.config import CCNowConfig
from reconciler.model import (
    InvalidOrderId,
    OrderState,
    ccnow_id,
    clipped,
    normalize_ccnow_id,
    usd_amount,
)
from reconciler.redact import (
    GIVEN_SECRET,
    SecretForms,
    config_secrets,
    given_secrets,
    holds_secret,
)
from reconciler.store import commands as cmds

# The actions as the command line names them -> CCNow's `x_action_N` word.
ACTIONS: Final[Mapping[str, cmds.Action]] = {
    "ship": "ship",
    "cancel": "cancel",
    "add-tracking": "track",
    "adjust": "adjust",
}
# Statuses past `pending`: CCNow takes no action on such an order, so none is sent.
PAST_PENDING = frozenset(
    {
        "mark_canceled",
        "canceled",
        "declined",
        "rejected",
        "mark_shipped",
        "completed",
        "test",
        "refunded",
        "chargeback",
    }
)
MAX_NOTES = 500
MAX_TRACK_FIELD = 100
MAX_KEY = 200
PASSWORD_MASK = "***"
_C = TypeVar("_C", cmds.NewCommand, cmds.Command)


class BadAction(ValueError):
    """An action reconciler refuses to record: bad input, named (exit 65). `field` is the
    request body's field at fault, when it came through the API."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _text(name: str, value: str | None, limit: int) -> str | None:
    """Return a form value that is safe to send (`_checked`), or None when none was given."""
    return None if value is None else _checked(name, value, limit)


def _checked(name: str, value: str, limit: int, *, says: str = "") -> str:
    """Return a form value that is safe to send: printable, trimmed, within `limit` (said
    as `says` in the message when given).

    The form encoding already keeps `&` and `=` inside the value; control characters are
    refused too, since CCNow shows notes to the consumer and its answers are lines.
    """
    value = value.strip()
    if not value:
        raise BadAction(f"{name}: must not be empty")
    if not value.isprintable():
        raise BadAction(f"{name}: control characters (newline, tab, ...) are not allowed")
    if len(value) > limit:
        raise BadAction(f"{name}: at most {says or f'{limit} characters'}")
    return value


def parse_amount(text: str, max_adjust: Decimal) -> str:
    """Return a discount as CCNow takes it (USD, two decimals); raise BadAction."""
    text = text.strip().removeprefix("$")
    amount = usd_amount(text)
    if amount is None:
        raise BadAction(f"--amount: {text!r} is not an amount in USD with at most 2 decimals")
    if amount <= 0:
        raise BadAction("--amount: must be greater than 0")
    if amount > max_adjust:
        raise BadAction(f"--amount: {amount:.2f} is above this account's max_adjust {max_adjust}")
    return f"{amount:.2f}"


def derived_key(c: cmds.NewCommand) -> str:
    """Return the key of a command given without one: the same action with the same fields on
    the same order is the same command, so running it twice sends it once."""
    parts = (c.account, c.order_id, c.action, c.notes, c.amount, c.trackname, c.tracknumber)
    text = "\x1f".join("" if p is None else p for p in parts)
    return "d-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def build(
    cfg: CCNowConfig,
    action: str,
    ids: Sequence[str],
    *,
    notes: str | None = None,
    carrier: str | None = None,
    number: str | None = None,
    amount: str | None = None,
    key: str | None = None,
    secrets: SecretForms | None = None,
) -> list[cmds.NewCommand]:
    """Return the commands of one request, one per order; raise BadAction. `secrets`: those
    of the whole config a value given must not hold (else this account's)."""
    word = ACTIONS.get(action)
    if word is None:
        raise BadAction(f"unknown action {clipped(action)} ({', '.join(ACTIONS)})")
    if not ids:
        raise BadAction("give at least one order id")
    # Kept in the database and the log, notes and tracking posted to CCNow, a key echoed back.
    forms = secrets if secrets is not None else given_secrets(config_secrets(cfg))
    seen: dict[str, str] = {}  # order id -> as given
    for raw in ids:
        # Before the id's own check, whose refusal quotes it.
        if holds_secret(raw, forms):
            raise BadAction(f"order id {len(seen) + 1}: {GIVEN_SECRET}")
        try:
            order_id = normalize_ccnow_id(raw)
        except InvalidOrderId as exc:
            raise BadAction(str(exc)) from None
        if order_id in seen:
            # As the API does: one of them may be a typo for another order.
            raise BadAction(
                f"order ids {clipped(seen[order_id])} and {clipped(raw)} name one order "
                f"({order_id}): give each order once"
            )
        seen[order_id] = raw
    order_ids = list(seen)
    notes = _text("--notes", notes, MAX_NOTES)
    trackname = _text("--carrier", carrier, MAX_TRACK_FIELD)
    tracknumber = _text("--number", number, MAX_TRACK_FIELD)
    if word == "track":
        if trackname is None or tracknumber is None:
            raise BadAction("add-tracking needs --carrier and --number")
    elif trackname is not None or tracknumber is not None:
        raise BadAction("--carrier and --number go with add-tracking only")
    usd = None
    if word == "adjust":
        if amount is None:
            raise BadAction("adjust needs --amount (USD)")
        usd = parse_amount(amount, cfg.max_adjust)
    elif amount is not None:
        raise BadAction("--amount goes with adjust only")
    if key is not None:
        key = _checked("--key", key, len(key))  # printable, trimmed; its length per order
    given = {"--notes": notes, "--carrier": trackname, "--number": tracknumber}
    for name, value in given.items():
        if value is not None and holds_secret(value, forms):
            raise BadAction(f"{name}: {GIVEN_SECRET}")
    out = []
    for order_id in order_ids:
        c = cmds.NewCommand(cfg.name, order_id, word, "", notes, usd, trackname, tracknumber)
        # One key for a batch of orders: each order's command has its own part of it, `K/ORDER`,
        # checked as the API's `keys` checks it (the command line hands them so to a daemon).
        mine = key if key is None or len(order_ids) == 1 else f"{key}/{order_id}"
        own = derived_key(c) if mine is None else _key("--key", mine, order_id, forms)
        out.append(replace(c, key=own))
    return out


# An API body's fields: DESIGN.md's names first; the command line's names (a list of ids,
# `number`, `key`, `keys`) are accepted too, one of each pair at most.
_SPELLINGS: Final[Mapping[str, str]] = {
    "order_id": "order_ids",
    "tracking_number": "number",
    "idempotency_key": "key",
}
_FIELDS = frozenset(
    {*_SPELLINGS, *_SPELLINGS.values(), "action", "notes", "carrier", "amount", "keys", "account"}
)


def from_document(
    cfg: CCNowConfig, doc: dict[str, object], secrets: SecretForms | None = None
) -> list[cmds.NewCommand]:
    """Return the commands of an API request body; raise BadAction naming the field.

    `{"order_id", "action", "notes"?, "amount"?, "carrier"?, "tracking_number"?,
    "idempotency_key"?, "account"?}` (DESIGN.md), or with `order_ids` (a list), `number`, `key`
    and `keys` (one key per order id) as the command line hands its commands to the daemon."""
    for name in doc:
        if name not in _FIELDS:
            raise BadAction(f"{clipped(name)}: unknown field", name)
    named: dict[str, str] = {}  # DESIGN.md's name -> the one the body used
    for design, other in _SPELLINGS.items():
        if design in doc and other in doc:
            raise BadAction(f"{design}: give {design} or {other}, not both", design)
        named[design] = other if other in doc else design
    action = doc.get("action")
    if action == "track":  # CCNow's own word for add-tracking
        action = "add-tracking"
    if not isinstance(action, str) or action not in ACTIONS:
        raise BadAction(f"action: required, one of {', '.join(ACTIONS)}", "action")
    ids_field = named["order_id"]
    ids = doc.get(ids_field)
    if ids_field == "order_id":
        if not isinstance(ids, str):
            raise BadAction("order_id: required, a CCNow order id", "order_id")
        ids = [ids]
    elif not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise BadAction("order_ids: must be a non-empty array of CCNow order ids", "order_ids")
    forms = secrets if secrets is not None else given_secrets(config_secrets(cfg))
    seen: dict[str, str] = {}
    for raw in ids:
        # Before the id's own check, whose refusal quotes it.
        if holds_secret(raw, forms):
            raise BadAction(f"{ids_field}: {GIVEN_SECRET}", ids_field)
        try:
            order_id = normalize_ccnow_id(raw)
        except InvalidOrderId as exc:
            raise BadAction(f"{ids_field}: {exc}", ids_field) from None
        if order_id in seen:
            # Merged, the ids would no longer pair with `keys`, nor say what was meant.
            raise BadAction(
                f"{ids_field}: {clipped(seen[order_id])} and {clipped(raw)} name one order "
                f"({order_id}): give each order once",
                ids_field,
            )
        seen[order_id] = raw
    given: dict[str, str | None] = {}
    for name, field in (
        ("notes", "notes"),
        ("carrier", "carrier"),
        ("number", named["tracking_number"]),
        ("amount", "amount"),
        ("key", named["idempotency_key"]),
    ):
        value = doc.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name == "amount":
            value = str(value)
        if value is not None and not isinstance(value, str):
            kind = (
                "a number or a string (USD, at most 2 decimals)" if name == "amount" else "a string"
            )
            raise BadAction(f"{field}: must be {kind}", field)
        given[name] = value
    for name, field in (("carrier", "carrier"), ("number", named["tracking_number"])):
        if action == "add-tracking" and given[name] is None:
            raise BadAction(f"{field}: required for add-tracking", field)
        if action != "add-tracking" and given[name] is not None:
            raise BadAction(f"{field}: goes with add-tracking only", field)
    if action == "adjust" and given["amount"] is None:
        raise BadAction("amount: required for adjust (USD)", "amount")
    if action != "adjust" and given["amount"] is not None:
        raise BadAction("amount: goes with adjust only", "amount")
    # What is left for `build` to refuse is a value, named by its command-line flag.
    fields = {"--notes": "notes", "--carrier": "carrier", "--amount": "amount"}
    fields |= {"--number": named["tracking_number"], "--key": named["idempotency_key"]}
    try:
        new = build(cfg, action, ids, **given, secrets=secrets)
    except BadAction as exc:
        flag, _, problem = str(exc).partition(": ")
        at = fields.get(flag)
        raise BadAction(str(exc) if at is None else f"{at}: {problem}", at) from None
    keys = doc.get("keys")
    if keys is None:
        return new
    if named["idempotency_key"] in doc:
        key_field = named["idempotency_key"]
        raise BadAction(f"keys: give keys or {key_field}, not both", "keys")
    if (
        not isinstance(keys, list)
        or len(keys) != len(new)
        or not all(isinstance(k, str) for k in keys)
    ):
        raise BadAction("keys: one printable key per order id", "keys")
    # The checks of `--key`: a key kept untrimmed would be another command than the same key
    # given as `key` (a second discount), and a key is kept in the database, events and log.
    try:
        own = [_key("keys", k, c.order_id, forms) for c, k in zip(new, keys, strict=True)]
    except BadAction as exc:
        raise BadAction(str(exc), "keys") from None
    if len(set(own)) != len(own):
        # A key names one command: the second order's would be taken for the first's.
        raise BadAction("keys: each order id needs a key of its own", "keys")
    return [replace(c, key=k) for c, k in zip(new, own, strict=True)]


def _key(name: str, key: str, order_id: str, forms: SecretForms | None) -> str:
    """Return one order's key (`--key`, an entry of `keys`) as kept; raise BadAction naming
    `name`. The command line hands its `KEY/ORDER` to `keys`: the suffix is not counted in the
    limit, and is kept as order ids are (`K/396101142` is `K/396-10-1142`: one command)."""
    checked = _key_checked(name, key, order_id)
    if holds_secret(checked, forms):
        raise BadAction(f"{name}: {GIVEN_SECRET}")
    return own_suffix(checked, order_id)


def _key_checked(name: str, key: str, order_id: str) -> str:
    """Return one order's key (`K`, `K/ORDER` of a key given for several) as `_checked` does,
    within MAX_KEY characters besides up to two `/ORDER` parts of its own order at its end: one
    rule for `--key`, `idempotency_key` and `keys`, so that a key one of them made is taken by
    the others."""
    stripped = key.strip()
    # Two at most, what the command line makes of a `--key` ending in its order (K/ORDER given
    # for several orders is K/ORDER/ORDER): excusing every one left a key without a bound.
    head, _own = peeled(stripped, order_id, at_most=2)
    limit = MAX_KEY + len(stripped) - len(head)
    # The limit the user knows, not it plus the parts excused here ("at most 220").
    says = f"{MAX_KEY} characters besides up to two /ORDER parts of its own order"
    return _checked(name, key, limit, says=says)


def peeled(key: str, order_id: str, *, at_most: int | None = None) -> tuple[str, int]:
    """Return a key without the `/ORDER` parts naming its own order it ends in (`K/ORDER` given
    for several orders is `K/ORDER/ORDER`), in any spelling, `at_most` of them when given, and
    how many there were."""
    head, own = key, 0
    while at_most is None or own < at_most:
        rest, slash, tail = head.rpartition("/")
        if not slash or ccnow_id(tail) != order_id:
            break
        head, own = rest, own + 1
    return head, own


def own_suffix(key: str, order_id: str) -> str:
    """Return a key with the `/ORDER` parts naming its own order it ends in as order ids are
    kept (`K/396101142` -> `K/396-10-1142`), any other key as it is."""
    head, own = peeled(key, order_id)
    return head + f"/{order_id}" * own


def local_refusal(state: OrderState | None) -> str | None:
    """Why an action on an order is refused without asking CCNow, or None."""
    if state is not None and state.status is not None and state.status in PAST_PENDING:
        return (
            f"its last known status is {state.status}, past pending; "
            "CCNow takes actions on pending orders only"
        )
    return None


def form(
    cfg: CCNowConfig, commands: Sequence[cmds.NewCommand | cmds.Command]
) -> list[tuple[str, str]]:
    """Return the fields of one post, numbered from 1 in the order of `commands`."""
    out = [("x_clientid", cfg.client_id), ("x_password", cfg.password.reveal())]
    if cfg.store_id:
        out.append(("x_storeid", cfg.store_id))
    for n, c in enumerate(commands, 1):
        out += [(f"x_orderid_{n}", c.order_id), (f"x_action_{n}", c.action)]
        for name, value in (
            ("x_notes", c.notes),
            ("x_amount", c.amount),
            ("x_trackname", c.trackname),
            ("x_tracknumber", c.tracknumber),
        ):
            if value is not None:
                out.append((f"{name}_{n}", value))
    return out


def dry_run_text(cfg: CCNowConfig, commands: Sequence[cmds.NewCommand]) -> str:
    """Return the posts as they would be sent, one encoded field a line, password masked."""
    posts = []
    for batch in batches(commands, cfg.batch_size):
        lines = [f"POST {cfg.url}"]
        for name, value in form(cfg, batch):
            # The mask as every other secret's (`redact`), not encoded (`%2A%2A%2A`).
            lines.append(f"{name}={PASSWORD_MASK if name == 'x_password' else quote_plus(value)}")
        posts.append("\n".join(lines))
    return "\n\n".join(posts) + "\n"


def batches(items: Sequence[_C], size: int) -> list[list[_C]]:
    """Split commands into posts of at most `size`; an `adjust` never shares a post with
    another action, since its post is sent once and the others' may be sent again."""
    out: list[list[_C]] = []
    for kind in (False, True):
        group = [c for c in items if (c.action == "adjust") is kind]
        out += [group[i : i + max(1, size)] for i in range(0, len(group), max(1, size))]
    return out
