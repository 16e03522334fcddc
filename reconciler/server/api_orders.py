"""The integration API's orders and event feed: track, read (optionally fresh), untrack, and
the events in commit order. Reads go through the read-only store, so they see committed rows."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from aiohttp import web

from ..config import ApiConfig
from ..logs import fields
from ..model import EventType, OrderKey, OrderState, Source
from ..order_view import order_json
from ..store import references, withdraw
from ..store import submissions as subs
from ..store.events import CursorAhead
from ..store.withdraw import BY_UNTRACK
from .api_requests import (
    ApiDeps,
    BadRequest,
    account_given,
    account_named,
    json_body,
    order_id_named,
    reference_named,
    source_named,
    unknown_field,
)

log = logging.getLogger("reconciler.api")

MAX_FEED_LIMIT = 1000
DEFAULT_FEED_LIMIT = 100
CURSOR = re.compile(r"[0-9]{1,18}", re.ASCII)
DIGITS = re.compile(r"[0-9]+", re.ASCII)
# A cursor past every seq a feed will hold, and within SQLite's integers.
BEYOND_EVERY_SEQ = 10**18
# A CCNow untrack's commands (ids, `, `-separated): withdrawn with it, and being sent.
WITHDRAWN_HEADER, SENDING_HEADER = "Reconciler-Withdrawn", "Reconciler-Sending"
EVENT_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.ASCII)
EVENT_TYPES = tuple(t.value for t in EventType)
_TRACK_FIELDS = frozenset({"source", "order_id", "external_reference", "account", "relink"})


class Orders:
    """The handlers of /api/v1/orders and /api/v1/events; one instance per app."""

    def __init__(self, config: ApiConfig, deps: ApiDeps) -> None:
        self.config = config
        self.deps = deps
        self._refreshes: set[asyncio.Task[bool]] = set()
        # Set when the API stops: a refresh still waiting answers at once with what is stored,
        # instead of being cut off without an answer when the stop's grace second ends.
        self._stopping = asyncio.Event()

    def account(self, source: Source, raw: object) -> str:
        """Return the account of `source` that `raw` names."""
        return account_named(self.deps.accounts.get(source, ()), source, raw)

    async def settling(self, raw: object, ref: object) -> str | None:
        """Return the CCV account `raw` names when the config no longer names it and `ref` is
        the reference of one of its uncertain submits, which this order settles (as `track
        --ref`); else None. Any other order would be followed under a name nothing polls."""
        if not isinstance(raw, str) or not isinstance(ref, str):
            return None
        if raw in self.deps.accounts.get("ccv", ()):
            return None
        return raw if await subs.uncertain(self.deps.reader, raw, [ref]) else None

    async def track(self, request: web.Request) -> web.Response:
        """POST /api/v1/orders: start following an order; 201 new, 200 already followed."""
        doc = await json_body(
            request, self.config.max_body_bytes, timeout_s=self.deps.body_timeout_s
        )
        for name in doc:
            if name not in _TRACK_FIELDS:
                raise unknown_field(name)
        source = source_named(doc.get("source"))
        order_id = order_id_named(self.deps, source, doc.get("order_id"))
        ref = doc.get("external_reference")
        if ref is not None:
            if source != "ccv":
                raise BadRequest(
                    422, "external references are for CCV orders", "external_reference"
                )
            ref = reference_named(self.deps, ref, "external_reference", tracked=True)
        relink = doc.get("relink", False)
        if not isinstance(relink, bool):
            raise BadRequest(422, "must be true or false", "relink")
        named = account_given(request, doc)
        account = (await self.settling(named, ref) if source == "ccv" else None) or self.account(
            source, named
        )
        key = OrderKey(source, account, order_id)
        now = time.time()
        store = self.deps.store
        # New or not is read in the writer's transaction that tracks it: read before it, two
        # requests for one new order would both answer 201.
        async with store.transaction():
            found = (await store.orders.load([key])).get(key)
            try:
                # As `track --ref`: its notifications and events would follow the new one;
                # moved only when asked (`--relink`), its old reference kept as an alias.
                moved, kept, carried = await references.keep_within(
                    store, account, [(order_id, ref)], relink=relink
                )
            except references.FollowedElsewhere as exc:
                ((_, followed, _),) = exc.moved
                raise BadRequest(
                    409,
                    f"the order is followed under reference {followed}; not moved to {ref} "
                    '(`"relink": true` moves it, its old reference kept as an alias)',
                    "external_reference",
                ) from None
            added = found is None
            await store.orders.track_within(source, account, kept, now)
            # The other followed orders carrying its reference now, as a read-back names them.
            also = await references.also_carried(store, key) if source == "ccv" else None
            # A submit of the reference on its way (CCV may answer another order: a second
            # carrier), or uncertain (this track settles it), read as the order is tracked.
            submitting = (await subs.open_of(store, account, [ref])).get(ref) if ref else None
        references.log_relinked(log, account, moved)
        references.log_carried(log, account, carried)
        if ref is not None and submitting == "sending":
            references.log_submit_sending(log, account, order_id, ref)
        if ref is not None and await subs.resolve(store, account, ref, order_id, "track", now):
            self.deps.submitter.on_commit()  # its order.submit_resolved goes out now
        state = await self.find(key)
        log.info("api.tracked", extra=fields(source=source, account=account, order_id=order_id))
        assert state is not None
        document = self.view(state)
        if also:  # only then: otherwise the answer is the object a read gives
            document["also_carried_by"] = also
        if ref is not None and submitting is not None:
            # Where it stands after this track: `sending`, or `resolved` once settled by it.
            sub = await subs.find(store, account, ref)
            document["submission_state"] = submitting if sub is None else sub.state
        return web.json_response(document, status=201 if added else 200)

    def view(self, state: OrderState) -> dict[str, Any]:
        """Return an order as `orders --json` shows it, by the config running now."""
        return order_json(state, watched=self.deps.watched, now=time.time())

    async def find(self, key: OrderKey) -> OrderState | None:
        """Return the committed snapshot row of one order."""
        return (await self.deps.reader.orders.load([key])).get(key)

    async def key(self, request: web.Request) -> tuple[OrderKey, OrderState | None]:
        """Return the order a path names, and its stored state when its account is one the
        config no longer names (None: the account is configured). Such an account keeps its
        orders until they are untracked (as `orders` and `untrack --account` reach them): its
        order is found by its name, and only when stored."""
        source = source_named(request.match_info["source"])
        order_id = order_id_named(self.deps, source, request.match_info["order_id"])
        raw = request.query.get("account")
        if raw is not None and raw not in self.deps.accounts.get(source, ()):
            key = OrderKey(source, raw, order_id)
            if (found := await self.find(key)) is not None:
                return key, found
        return OrderKey(source, self.account(source, raw), order_id), None

    async def read(self, request: web.Request) -> web.Response:
        """GET /api/v1/orders/{source}/{order_id}[?refresh=1]: the order, optionally fresh."""
        key, unconfigured = await self.key(request)
        refresh = request.query.get("refresh", "0")
        if refresh not in ("0", "1", "true", "false"):
            raise BadRequest(400, "must be 1 or 0", "refresh")
        if refresh in ("1", "true") and unconfigured is not None:
            raise BadRequest(
                422, "the config no longer names this account: nothing can ask about it", "refresh"
            )
        state = unconfigured or await self.find(key)
        if state is None:
            raise BadRequest(404, "not tracked", "order_id")
        if refresh not in ("1", "true"):
            return web.json_response(self.view(state))
        if self._stopping.is_set():
            # A check started now would be cancelled by close() within the stop's second.
            return web.json_response({**self.view(state), "refreshed": False})
        task = asyncio.ensure_future(self.deps.refresh(key))
        # The check goes on past the timeout (its result is committed for the next read).
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            # Not wait_for: the request's end (a timeout, the stop, a client gone) leaves the
            # check running.
            done, _ = await asyncio.wait(
                (task, stopping),
                timeout=self.config.refresh_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopping.cancel()
        fresh = task.result() if task in done else False
        state = await self.find(key) or state
        return web.json_response({**self.view(state), "refreshed": fresh})

    async def untrack(self, request: web.Request) -> web.Response:
        """DELETE /api/v1/orders/{source}/{order_id}: stop following; 204, as the contract
        says. A CCNow order's queued commands are withdrawn with it: headers name them
        (`Reconciler-Withdrawn: 10, 11`), and those being sent, their withdrawal recorded
        (`Reconciler-Sending`: store/withdraw.py); each is left out when it names none."""
        key, _ = await self.key(request)
        if key.source != "ccnow":
            await self.deps.store.orders.untrack(key.source, key.account, [key.order_id])
            log.info("api.untracked", extra=fields(source=key.source, order_id=key.order_id))
            return web.Response(status=204)
        store, now = self.deps.store, time.time()
        _, out = await withdraw.untrack(store, key.account, [key.order_id], by=BY_UNTRACK, now=now)
        log.info(
            "api.untracked",
            extra=fields(
                source=key.source,
                order_id=key.order_id,
                withdrawn=[c.id for c in out.withdrawn],
                sending=[c.id for c in out.sending],
            ),
        )
        if out.withdrawn:
            self.deps.submitter.on_commit()  # their order.action_refused go out now
        shown = {WITHDRAWN_HEADER: out.withdrawn, SENDING_HEADER: out.sending}
        headers = {name: ", ".join(str(c.id) for c in cs) for name, cs in shown.items() if cs}
        return web.Response(status=204, headers=headers)

    async def events(self, request: web.Request) -> web.Response:
        """GET /api/v1/events?after=CURSOR|EVENT_ID&limit=N&type=T: the feed in commit order."""
        after_text = request.query.get("after", "0")
        if DIGITS.fullmatch(after_text):
            # Of more digits than any seq: beyond the feed (409), as a smaller one past its
            # newest is. Clamped, no integer past SQLite's (or int()'s digit limit) is read.
            digits = after_text.lstrip("0") or "0"
            after = int(digits) if len(digits) <= 18 else BEYOND_EVERY_SEQ
        elif EVENT_ID.fullmatch(after_text):
            # An event's own id works as a cursor too: the events after it.
            found = await self.deps.reader.events.seq_of(after_text.lower())
            if found is None:
                raise BadRequest(404, "no event with this id (never stored, or pruned)", "after")
            after = found
        else:
            raise BadRequest(
                400, "not a cursor of this feed (use `next` as given, or an event id)", "after"
            )
        limit_text = request.query.get("limit", str(DEFAULT_FEED_LIMIT))
        if not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > 6:
            raise BadRequest(400, f"must be an integer 1 to {MAX_FEED_LIMIT}", "limit")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_FEED_LIMIT:
            raise BadRequest(400, f"must be an integer 1 to {MAX_FEED_LIMIT}", "limit")
        kind = request.query.get("type")
        if kind is not None and kind not in EVENT_TYPES:
            raise BadRequest(400, f"not an event type (one of {', '.join(EVENT_TYPES)})", "type")
        try:
            bodies, last = await self.deps.reader.events.feed(after, kind, limit)
        except CursorAhead as exc:
            raise BadRequest(
                409,
                f"the cursor is beyond this feed's newest event ({exc.newest}): the database "
                "was restored or replaced; read on from a cursor you trust, or from 0",
                "after",
            ) from None
        # The bodies are stored CloudEvents JSON: spliced in, not parsed and encoded again.
        payload = b'{"events":[' + b",".join(bodies) + b'],"next":"' + str(last).encode() + b'"}'
        return web.Response(body=payload, content_type="application/json")

    def stop(self) -> None:
        """Answer the refreshes still waiting now, with the stored state (`refreshed`: false)."""
        self._stopping.set()

    async def close(self) -> None:
        """Wait for refreshes still running past their request's timeout (cancelled)."""
        for task in list(self._refreshes):
            task.cancel()
        await asyncio.gather(*self._refreshes, return_exceptions=True)
