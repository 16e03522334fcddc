"""CCNow order actions (ship, cancel, track, adjust) as durable commands.

Every command is committed before anything is sent; CCNow's answer line for its order is
applied to the snapshot in the transaction that closes it (`pending -> mark_shipped`, with
`via: "action"`). An answer that fails as a whole (maintenance, an HTML page, a 5xx, a bad
login) leaves the commands queued for a later attempt. `ship`, `cancel` and `track` are sent
again after a lost answer; an `adjust` never is (CCNow would discount twice): it becomes
`uncertain`, raises one `order.action_uncertain`, and waits for `reconciler ccnow resolve`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TypeVar
from urllib.parse import quote_plus, urlencode

import aiohttp
from aiohttp import hdrs
from yarl import URL

from reconciler import USER_AGENT
from reconciler import store_commands as cmds
from reconciler.config import CCNowConfig
from reconciler.events import Event, action_event
from reconciler.logs import fields
from reconciler.model import (
    InvalidOrderId,
    Observation,
    OrderKey,
    OrderState,
    Outcome,
    normalize_ccnow_id,
    usd_amount,
)
from reconciler.reconcile import Reconciler
from reconciler.sources.ccnow import MAX_BODY_BYTES, Answer, OrderLine, is_complete, parse_answer
from reconciler.sources.errors import SourceError
from reconciler.sources.http import Reply, RequestFailed, read_body, request
from reconciler.store import Store
from reconciler.writes.submit import failpoint

log = logging.getLogger("reconciler.writes.ccnow_actions")

# The actions as the command line names them -> CCNow's `x_action_N` word.
ACTIONS: dict[str, cmds.Action] = {
    "ship": "ship",
    "cancel": "cancel",
    "add-tracking": "track",
    "adjust": "adjust",
}
# What CCNow answers when the action took: the queue state it put the order in, or (for an
# order the lifecycle moved on quickly) where that queue leads.
_TAKEN = {"ship": ("mark_shipped", "completed"), "cancel": ("mark_canceled", "canceled")}
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
# A whole post failed: try again after this, doubling per attempt, at most an hour.
RETRY_FIRST_S = 30.0
RETRY_MAX_S = 3600.0
PASSWORD_MASK = "********"
_C = TypeVar("_C", cmds.NewCommand, cmds.Command)


class BadAction(ValueError):
    """An action reconciler refuses to record: bad input, named (exit 65)."""


# --- validation and the form ----------------------------------------------------------------


def _text(name: str, value: str | None, limit: int) -> str | None:
    """Return a form value that is safe to send: printable, trimmed, within `limit`.

    The form encoding already keeps `&` and `=` inside the value; control characters are
    refused too, since CCNow shows notes to the consumer and its answers are lines.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise BadAction(f"{name}: must not be empty")
    if not value.isprintable():
        raise BadAction(f"{name}: control characters (newline, tab, ...) are not allowed")
    if len(value) > limit:
        raise BadAction(f"{name}: at most {limit} characters")
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
) -> list[cmds.NewCommand]:
    """Return the commands of one request, one per order; raise BadAction."""
    word = ACTIONS.get(action)
    if word is None:
        raise BadAction(f"unknown action {action!r} ({', '.join(ACTIONS)})")
    if not ids:
        raise BadAction("give at least one order id")
    order_ids: list[str] = []
    for raw in ids:
        try:
            order_ids.append(normalize_ccnow_id(raw))
        except InvalidOrderId as exc:
            raise BadAction(str(exc)) from None
    order_ids = list(dict.fromkeys(order_ids))
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
        key = _text("--key", key, 200)
    out = []
    for order_id in order_ids:
        c = cmds.NewCommand(cfg.name, order_id, word, "", notes, usd, trackname, tracknumber)
        # One key for a batch of orders: each order's command has its own part of it.
        own = derived_key(c) if key is None else key if len(order_ids) == 1 else f"{key}/{order_id}"
        out.append(
            cmds.NewCommand(cfg.name, order_id, word, own, notes, usd, trackname, tracknumber)
        )
    return out


def from_document(cfg: CCNowConfig, doc: dict[str, object]) -> list[cmds.NewCommand]:
    """Return the commands of an API request body; raise BadAction."""
    ids = doc.get("order_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadAction("order_ids: must be an array of CCNow order ids")
    action = doc.get("action")
    if not isinstance(action, str):
        raise BadAction(f"action: required, one of {', '.join(ACTIONS)}")
    given: dict[str, str | None] = {}
    for name in ("notes", "carrier", "number", "amount", "key"):
        value = doc.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name == "amount":
            value = str(value)
        if value is not None and not isinstance(value, str):
            raise BadAction(f"{name}: must be a string")
        given[name] = value
    new = build(cfg, "add-tracking" if action == "track" else action, ids, **given)
    keys = doc.get("keys")
    if keys is None:
        return new
    if (
        not isinstance(keys, list)
        or len(keys) != len(new)
        or not all(isinstance(k, str) and k and k.isprintable() and len(k) <= 300 for k in keys)
    ):
        raise BadAction("keys: one printable key per order id")
    return [replace(c, key=k) for c, k in zip(new, keys, strict=True)]


def local_refusal(state: OrderState | None) -> str | None:
    """Why an action on an order is refused without asking CCNow, or None."""
    if state is not None and state.status in PAST_PENDING:
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
            shown = PASSWORD_MASK if name == "x_password" else value
            lines.append(f"{name}={quote_plus(shown)}")
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


# --- sending ----------------------------------------------------------------------------------


class NotSent(Exception):
    """The post surely did not reach CCNow (no connection was made)."""


class Lost(Exception):
    """The post may have reached CCNow but its answer was lost (timeout, dropped connection,
    an answer cut off). `str()` is a short word."""


@dataclass
class Tally:
    """What one run did: commands posted, and how those it touched ended."""

    sent: int = 0
    done: int = 0
    refused: int = 0
    uncertain: int = 0
    queued: int = 0

    def line(self) -> str:
        """Return the summary line of a run."""
        return (
            f"sent {self.sent}, done {self.done}, refused {self.refused}, "
            f"uncertain {self.uncertain}, queued {self.queued}"
        )

    def count(self, state: str) -> None:
        """Count one command by the state it is in after the run."""
        if state in ("succeeded", "sent"):
            self.done += 1
        elif state in ("refused", "not_sent"):
            self.refused += 1
        elif state == "uncertain":
            self.uncertain += 1
        else:
            self.queued += 1


@dataclass(frozen=True)
class Taken:
    """What became of the commands of one request."""

    rows: list[cmds.Command]
    earlier: set[int]  # ids of commands their key had made before
    refused: list[tuple[cmds.NewCommand, str]]  # refused here, never recorded nor sent
    sent: int

    def tally(self) -> Tally:
        """Count the request's commands by where they ended."""
        tally = Tally(sent=self.sent, refused=len(self.refused))
        for c in self.rows:
            tally.count(c.state)
        return tally

    def to_json(self) -> list[dict[str, object]]:
        """One object per order, refused-here ones with `id` null."""
        out = [command_json(c, earlier=c.id in self.earlier) for c in self.rows]
        out += [
            {
                "id": None,
                "account": c.account,
                "order_id": c.order_id,
                "action": c.action,
                "state": "refused",
                "answer": why,
                "sent": False,
            }
            for c, why in self.refused
        ]
        return out


def command_json(c: cmds.Command, *, earlier: bool = False) -> dict[str, object]:
    """Return a command as the API shows it."""
    return {
        "id": c.id,
        "account": c.account,
        "order_id": c.order_id,
        "action": c.action,
        "key": c.key,
        "state": c.state,
        "answer": c.answer,
        "attempts": c.attempts,
        "notes": c.notes,
        "amount": c.amount,
        "trackname": c.trackname,
        "tracknumber": c.tracknumber,
        "made_before": earlier,
    }


def _lines_by_id(answer: Answer) -> dict[str, OrderLine | None]:
    """Return the answer line per order id; None for an id whose lines disagree."""
    lines: dict[str, OrderLine | None] = {}
    for line in answer.orders:
        previous = lines.get(line.order_id, line)
        lines[line.order_id] = line if previous == line else None
    return lines


def outcome(c: cmds.Command, line: OrderLine | None) -> tuple[cmds.State, str]:
    """Return how CCNow's answer line for a command's order closes it, and the words kept."""
    if line is None:
        return "refused", "no single answer line for this order"
    if line.status is None:
        return "refused", line.error or "error"
    taken = _TAKEN.get(c.action)
    if taken is not None and line.status not in taken:
        return "refused", f"answered {line.status}, not {taken[0]}"
    return "succeeded", line.status


class ActionSender:
    """Sends queued CCNow commands and closes them with CCNow's answers; one per writer."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        reconciler: Reconciler,
        accounts: Sequence[CCNowConfig],
        *,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.session = session
        self.reconciler = reconciler
        self.accounts = {c.name: c for c in accounts}
        self.on_commit = on_commit
        self.clock = clock

    async def settle_interrupted(self) -> int:
        """Deal with commands a stopped process left `sending`: whether CCNow got them is
        unknown, so an `adjust` becomes uncertain and the others are queued again."""
        left = await cmds.in_state(self.store, "sending")
        again = [c.id for c in left if c.action != "adjust"]
        if again:
            await cmds.requeue(self.store, again, next_attempt_at=0.0, why="interrupted")
        adjusts = [c for c in left if c.action == "adjust"]
        if adjusts:
            await self._make_uncertain(adjusts, "interrupted")
        return len(left)

    async def take(self, new: Sequence[cmds.NewCommand]) -> Taken:
        """Record new commands (those past pending refused here, keys given before returning
        their command) and send them at once, with whatever else is due."""
        account = new[0].account if new else ""
        made = await cmds.by_keys(self.store, account, [c.key for c in new])
        fresh = [c for c in new if c.key not in made]
        states = await self.store.load_orders(
            OrderKey("ccnow", c.account, c.order_id) for c in fresh
        )
        wanted: list[cmds.NewCommand] = []
        refused: list[tuple[cmds.NewCommand, str]] = []
        for c in fresh:
            why = local_refusal(states.get(OrderKey("ccnow", c.account, c.order_id)))
            if why is None:
                wanted.append(c)
            else:
                refused.append((c, why))
        recorded = await cmds.record(self.store, wanted, self.clock())
        failpoint("ccnow.recorded")
        ids = [c.id for c in made.values()] + [c.id for c, _new in recorded]
        tally = Tally()
        await self.send(await cmds.get(self.store, ids), tally)
        await self.send_due()
        rows = await cmds.get(self.store, ids)
        return Taken(rows, {c.id for c in made.values()}, refused, tally.sent)

    async def command(self, command_id: int) -> cmds.Command | None:
        """Return one command by id."""
        return next(iter(await cmds.get(self.store, [command_id])), None)

    async def send_due(self, tally: Tally | None = None) -> Tally:
        """Send every queued command whose attempt is due."""
        tally = tally or Tally()
        await self.send(await cmds.due(self.store, self.clock()), tally)
        return tally

    async def send(self, commands: Sequence[cmds.Command], tally: Tally) -> None:
        """Send queued commands (due or not), batched per account; count where they end."""
        by_account: dict[str, list[cmds.Command]] = {}
        for c in commands:
            if c.state == "queued" and c.account in self.accounts:
                by_account.setdefault(c.account, []).append(c)
        for account, items in by_account.items():
            cfg = self.accounts[account]
            for batch in batches(items, cfg.batch_size):
                await self._send_batch(cfg, batch, tally)

    async def _send_batch(self, cfg: CCNowConfig, batch: list[cmds.Command], tally: Tally) -> None:
        claimed = set(await cmds.mark_sending(self.store, [c.id for c in batch]))
        batch = [c for c in batch if c.id in claimed]
        if not batch:
            return
        failpoint("ccnow.sending")
        tally.sent += len(batch)
        once = batch[0].action == "adjust"
        try:
            answer = await self._post(cfg, batch, once=once)
        except Lost as exc:
            if once:
                await self._make_uncertain(batch, str(exc))
                tally.uncertain += len(batch)
                return
            await self._requeue(cfg, batch, str(exc), tally)
            return
        except (NotSent, SourceError) as exc:
            await self._requeue(cfg, batch, str(exc), tally)
            return
        failpoint("ccnow.answered")
        await self._close(cfg, batch, answer, tally)

    async def _requeue(
        self, cfg: CCNowConfig, batch: list[cmds.Command], why: str, tally: Tally
    ) -> None:
        attempts = max(c.attempts for c in batch) + 1
        delay = min(RETRY_FIRST_S * 2.0 ** (attempts - 1), RETRY_MAX_S)
        await cmds.requeue(
            self.store, [c.id for c in batch], next_attempt_at=self.clock() + delay, why=why
        )
        tally.queued += len(batch)
        log.warning(
            "ccnow.action_retry_later",
            extra=fields(account=cfg.name, commands=len(batch), reason=why, retry_in_s=delay),
        )

    async def _post(self, cfg: CCNowConfig, batch: list[cmds.Command], *, once: bool) -> Answer:
        """Post one batch and parse the answer; raise NotSent, Lost or SourceError."""
        data = urlencode(form(cfg, batch)).encode("ascii")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "text/plain",
            "User-Agent": USER_AGENT,
        }
        timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
        if once:
            reply = await _post_once(self.session, URL(cfg.url), headers, data, timeout)
        else:
            try:
                reply = await request(
                    self.session,
                    "POST",
                    URL(cfg.url),
                    headers=headers,
                    data=data,
                    timeout=timeout,
                    retry=cfg.retry,
                    max_body=MAX_BODY_BYTES,
                    log=log,
                    complete=is_complete,
                )
            except RequestFailed as exc:
                raise Lost(exc.word) from None
        if reply.status != 200:
            raise SourceError(f"http {reply.status}")
        return parse_answer(reply.body, secrets=(cfg.password.reveal(),))

    async def _close(
        self, cfg: CCNowConfig, batch: list[cmds.Command], answer: Answer, tally: Tally
    ) -> None:
        lines = _lines_by_id(answer)
        closes: list[tuple[int, cmds.State, str | None]] = []
        observations: list[Observation] = []
        for c in batch:
            state, words = outcome(c, lines.get(c.order_id))
            if state == "refused" and c.attempts > 0 and c.action in _TAKEN:
                # An earlier post of this command may have reached CCNow with its answer lost:
                # if the order is where the action puts it, the action took then.
                status = await self._status(cfg, c.order_id)
                if status is not None and status in _TAKEN[c.action]:
                    state, words = "succeeded", f"{status} (taken by an earlier attempt)"
            closes.append((c.id, state, words))
            line = lines.get(c.order_id)
            if line is not None and line.status is not None:
                key = OrderKey("ccnow", cfg.name, c.order_id)
                observations.append(Observation(key, Outcome.OK, status=line.status))
        await self._commit(cfg, batch, closes, observations)
        for c, (_, state, said) in zip(batch, closes, strict=True):
            tally.count(state)
            level = logging.INFO if state == "succeeded" else logging.WARNING
            log.log(
                level,
                f"ccnow.action_{state}",
                extra=fields(
                    account=cfg.name,
                    order_id=c.order_id,
                    action=c.action,
                    command_id=c.id,
                    answer=said,
                ),
            )

    async def _status(self, cfg: CCNowConfig, order_id: str) -> str | None:
        from reconciler.sources.ccnow import CCNowClient

        seen: list[Observation] = []

        async def emit(o: Observation) -> None:
            seen.append(o)

        try:
            await CCNowClient(cfg, self.session).query([order_id], emit)
        except SourceError:
            return None
        return next((o.status for o in seen if o.outcome is Outcome.OK), None)

    async def _commit(
        self,
        cfg: CCNowConfig,
        batch: list[cmds.Command],
        closes: list[tuple[int, cmds.State, str | None]],
        observations: list[Observation],
    ) -> None:
        now = self.clock()
        by_id = {c.id: c for c in batch}

        async def within() -> list[Event]:
            await cmds.close_within(self.store, closes, now)
            return [
                self._event(by_id[i], state, words, now)
                for i, state, words in closes
                if state in ("succeeded", "refused")
            ]

        await self.reconciler.apply(observations, via="action", discover=True, within=within)

    def _event(self, c: cmds.Command, state: str, answer: str | None, now: float) -> Event:
        return action_event(
            self.store.store_id,
            c.id,
            state,
            account=c.account,
            order_id=c.order_id,
            action=c.action,
            answer=answer,
            time=now,
        )

    async def _make_uncertain(self, commands: Sequence[cmds.Command], why: str) -> None:
        now = self.clock()
        events = [self._event(c, "uncertain", why, now) for c in commands]
        await cmds.close(self.store, [(c.id, "uncertain", why) for c in commands], events, now)
        self.on_commit()
        for c in commands:
            log.error(
                "ccnow.action_uncertain",
                extra=fields(
                    account=c.account,
                    order_id=c.order_id,
                    action=c.action,
                    command_id=c.id,
                    reason=why,
                ),
            )

    async def resolve(self, account: str, order_id: str, *, sent: bool) -> list[cmds.Command]:
        """Settle an order's uncertain commands by a person's word; return them."""
        found = await cmds.of_order(self.store, account, order_id, "uncertain")
        if found:
            state: cmds.State = "sent" if sent else "not_sent"
            now = self.clock()
            words = "resolved by hand: " + ("CCNow has it" if sent else "CCNow does not have it")
            await cmds.close(self.store, [(c.id, state, words) for c in found], [], now)
            log.info(
                "ccnow.action_resolved",
                extra=fields(
                    account=account,
                    order_id=order_id,
                    commands=[c.id for c in found],
                    state=state,
                ),
            )
        return found


async def _post_once(
    session: aiohttp.ClientSession,
    url: URL,
    headers: dict[str, str],
    data: bytes,
    timeout: aiohttp.ClientTimeout,
) -> Reply:
    """Post once, never again: raise NotSent when no connection was made, Lost when the
    answer may have been lost after CCNow got the post."""
    try:
        async with session.post(
            url, headers=headers, data=data, timeout=timeout, allow_redirects=False
        ) as resp:
            body = await read_body(resp, MAX_BODY_BYTES)
            reply = Reply(resp.status, body, resp.headers.get(hdrs.CONTENT_TYPE, ""))
    except aiohttp.ClientConnectorError:
        raise NotSent("connection refused") from None
    except asyncio.TimeoutError:
        raise Lost("timeout") from None
    except aiohttp.ClientError:
        raise Lost("connection") from None
    if not is_complete(reply):
        raise Lost("truncated_answer")
    return reply
