"""CCNow Order Update API client: the pending list and batched order queries (the answer
parser is ccnow_answer.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from reconciler import USER_AGENT
from reconciler.config import CCNowConfig
from reconciler.model import (
    Observation,
    OrderKey,
    Outcome,
)
from reconciler.redact import answer_secrets, redact
from reconciler.sources.ccnow_answer import (
    LOGGED_IDS,
    Answer,
    EmptyAnswer,
    OrderLine,
    by_id,
    parse_answer,
    speaks_ccnow,
)
from reconciler.sources.ccnow_batches import (
    MISSING,
    BatchFailures,
    Emit,
    Split,
    Splits,
    in_batches,
    match,
    missing_lines,
)
from reconciler.sources.ccnow_cut import drop_line, read_complete, read_undecided, word_start
from reconciler.sources.errors import (
    AuthenticationFailed,
    ProtocolError,
    SourceError,
)
from reconciler.sources.http import RequestFailed, drain, request

log = logging.getLogger("reconciler.sources.ccnow")

# A pending list of tens of thousands of orders is well below this.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Query batches failing in a row (at least; twice the concurrency with more workers) that say
# CCNow is down: asking the remaining batches, each with its retries, would only prolong it.
BREAKER_BATCHES = 3


class UnreadableAnswer(ProtocolError):
    """CCNow answered a query in its protocol, with a line no asked order's could be read
    from: one of its orders may be the cause, each asked alone is not."""


class CCNowClient:
    """Ask CCNow about the orders of one account; the session belongs to the caller, and so may
    `gate`, the account's bound on its posts in flight (Gates: shared with its other clients
    and its action posts; by default the client's own). `secrets`: the config's, masked in
    CCNow's words and never kept as a status besides the account's password."""

    def __init__(
        self,
        config: CCNowConfig,
        session: aiohttp.ClientSession,
        *,
        halt: asyncio.Event | None = None,
        gate: asyncio.Semaphore | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self._config = config
        self._gate = asyncio.Semaphore(config.concurrency) if gate is None else gate
        self._halt = halt  # set: no request is tried again (the daemon stops)
        self._session = session
        self._url = URL(config.url)
        self._fields = [("x_clientid", config.client_id), ("x_password", config.password.reveal())]
        if config.store_id:
            self._fields.append(("x_storeid", config.store_id))
        self._headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "text/plain",
            "User-Agent": USER_AGENT,
        }
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._secrets = answer_secrets(config.password.reveal(), secrets)
        self._breaker_limit = max(BREAKER_BATCHES, 2 * config.concurrency)

    async def pending_list(self) -> list[Observation]:
        """Return the orders CCNow lists as pending, as OK observations with their status.

        A line that says no status (one that is not a status word, an error, two lines that
        disagree, one no order id can be read from) is left out, with one warning per answer
        naming them. A followed order on it is not on the list as read: a catch-up queries it
        on its own, as a poll does one the read before named (it left the list), and a due
        tick any other; that answer is its check. One nobody follows is no check of the
        account's at all."""
        answer, asked, last = await self._post([])  # as of the attempt that brought it
        lines, disagreeing = by_id(answer)
        observations = []
        if last is not None:
            # Its line may be cut: the order is queried alone, and counts as listed (it left
            # nothing) with what that answer says; undecided, its check fails, and it is
            # neither new nor pending on the strength of a cut line.
            lines.pop(last.order_id, None)
            observations.append(await self._decide(last))
        unreadable: list[str] = []
        for order_id, line in lines.items():
            if order_id in disagreeing or line.status is None:
                unreadable.append(order_id)
                continue
            key = OrderKey("ccnow", self._config.name, order_id)
            observations.append(Observation(key, Outcome.OK, status=line.status, asked=asked))
        if unreadable or answer.skipped:
            log.warning(
                "ccnow.pending_lines_unreadable",
                extra={
                    "fields": {
                        "account": self._config.name,
                        "count": len(unreadable) + answer.skipped,
                        "order_ids": unreadable[:LOGGED_IDS],
                    }
                },
            )
        return observations

    async def query(
        self,
        order_ids: Sequence[str],
        emit: Emit,
    ) -> None:
        """Query orders in batches and await `emit` for each.

        A batch whose answer does not come (a 5xx or 429 after its retries, a timeout, a page,
        a cut answer) fails its own orders, and the other batches go on; one whose answer
        holds a line no asked order's can be read from is asked again in halves, down to the
        order alone, so that only that order fails (within a bound of posts a batch, a share
        more for each order found alone up to FOUND_ORDERS shares, `Split`: past it, the parts
        not asked fail; one warning a pass counts them). The orders an answer that was read
        left out, when it held a line of another asked order (the order's error line, a cut
        last line after a line read), are asked again from the same posts, in a post of their
        own; an answer holding none of them fails the first `missing` (CCNow stopped at it)
        and asks the others again; one left out alone or past the posts fails `missing`. A
        batch's own post reading none of several (nothing, or no line of theirs) asks the
        others once more, so: none again, every order fails as before (`protocol`, `missing`).
        The account fails (this raises) when no batch answers, when BREAKER_BATCHES batches
        fail in a row (one asked in parts counts once: when none of its parts answered, or
        some were not asked unless it found its odd order alone and read a part of several,
        or when it earned more posts without reading a part of several: `Split.suspect`; one
        whose left-out orders were asked again answered), or at an answer about the whole
        account (a refused login, maintenance, a `message`)."""
        batches = await in_batches(self._config, order_ids, emit)
        failures = BatchFailures(emit, self._config.name, self._breaker_limit)
        splits = Splits(self._config.name)  # this pass's, for its one log line

        async def handle(
            batch: list[str], split: Split | None = None, again: bool = False, probe: bool = False
        ) -> bool:
            # `again`: orders an answer left out, asked again (`ask_again`), or a half of them.
            # `probe`: a batch's others (`others`): False, emitting nothing, when none is read.
            try:
                answer, asked, last = await self._post(batch)
            except RequestFailed as exc:
                if probe:
                    return False
                await failures.failed(batch, exc, exc.word, exc.sent_at, counted=split is None)
                return False  # the next batch goes alone until one answers (drain)
            except UnreadableAnswer as exc:
                if len(batch) > 1:
                    return await halves(batch, exc, split, again) or probe
                if split is not None:
                    split.found += 1
                await failures.failed(batch, exc, "protocol", time.time(), counted=split is None)
                return probe
            except ProtocolError as exc:
                if probe:
                    return False
                if isinstance(exc, EmptyAnswer):  # none of them, as below
                    now = time.time()
                    if again:
                        await stopped(batch, missing_lines(self._config.name, batch, now), split)
                        return True
                    if split is None and len(batch) > 1 and await others(batch, now):
                        return True
                await failures.failed(batch, exc, "protocol", time.time(), counted=split is None)
                return False
            cut = None if last is None or last.order_id not in batch else last.order_id
            asked_ids = batch if cut is None else [i for i in batch if i != cut]
            observations = match(self._config.name, asked_ids, answer, asked)
            missing = [o for o in observations if o.reason == MISSING]
            # None of them: a line of no asked order's. Not a cut line alone (`asked_ids`): the
            # line of the first, cut; taken as a stop, a CGI dying at the same byte every post
            # would ask the others again one cut line a post.
            none = len(missing) == len(batch)
            if probe and none:
                return False
            await failures.answered(reset=split is None)
            if split is not None:
                split.read = True
                split.several = split.several or len(batch) > 1
            if again and none:
                await stopped(batch, missing, split)
                return True
            if split is None and len(batch) > 1 and none and await others(batch, asked):
                return True
            # Asked again: orders an answer left out when it held a line of another asked order
            # (CCNow stopping at a bad id, or answering so many lines a post), besides a cut
            # last line (a CGI dying at the same byte every post would ask each order again).
            # An answer of no asked order's line is no answer about them (asked again, it
            # would be the same).
            read = len(asked_ids) > 1 and len(missing) < len(asked_ids)
            for observation in observations:
                if not (read and observation.reason == MISSING):
                    await emit(observation)
            if last is not None and cut is not None:
                await emit(await self._decide(last))
            if read and missing:
                await ask_again(batch, missing, split, first=not again)
            return True

        async def others(batch: list[str], asked: float) -> bool:
            # A batch's own post of several read none of them (nothing, or no line of theirs):
            # CCNow may have stopped silently at the first (a bad id first: a healthy account's
            # batch failed every pass, or opened the breaker). The others are asked once more:
            # read, the first fails `missing`; none again (nothing pending, CCNow down), False:
            # every order fails as before.
            split, _ = splits.start(len(batch), None)
            splits.asked_again(len(batch) - 1)
            if not splits.post(split) or not await handle(batch[1:], split, again=True, probe=True):
                return False
            await failures.answered()
            await emit(missing_lines(self._config.name, batch[:1], asked)[0])
            return True

        async def stopped(
            batch: list[str], missing: list[Observation], split: Split | None
        ) -> None:
            # Orders left out, asked again, answered none of them (nothing, or no line of
            # theirs): CCNow stopped silently at the first (a bad id: lines before it, none for
            # it or after), which fails `missing`; the others are asked again (else each failed
            # `missing`, pass after pass). Each post still reads or drops an order.
            await emit(missing[0])
            if missing[1:]:
                await ask_again(batch, missing[1:], split, first=False)

        async def ask_again(
            batch: list[str], missing: list[Observation], split: Split | None, *, first: bool
        ) -> None:
            # In one post of only those orders, within the batch's posts (`Split`); the answer
            # must hold a line of one of them, or the first fails (`stopped`), so each post
            # reads at least one order or drops one: an order left out when asked alone, or
            # past the posts, fails `missing`. Its post answered: what these posts meet never
            # counts in the breaker. Counted once an order, when `first` asked again.
            split, _ = splits.start(len(batch), split)
            if first:
                splits.asked_again(len(missing))
            if not splits.post(split):
                for observation in missing:
                    await emit(observation)
                return
            await handle([o.key.order_id for o in missing], split, again=True)

        async def halves(
            batch: list[str], exc: UnreadableAnswer, split: Split | None, again: bool
        ) -> bool:
            # Each half asked again in this pass: the order whose line cannot be read fails
            # alone, the others are decided (else it fails its batch, poll after poll, and the
            # account with it while its one-order probe answers). Past the batch's posts (a
            # share more for each order found alone, up to FOUND_ORDERS: a second odd order
            # failed 6-9 healthy ones, batch after batch, pass after pass), its parts not asked
            # fail (`protocol`). A part's answer does not end the breaker's run
            # (else a line in every answer of several orders never opens it, its parts
            # answering: a few orders a batch read, the others never asked, pass after pass):
            # the batch ends it when all its parts were asked and some answered, and counts
            # once in it when none answered, or some were not asked unless it found an order
            # alone unreadable and read a part of several orders (two odd orders in a batch:
            # a healthy account), or when it earned more posts and read no part of several
            # (`Split.suspect`). A part's own failure never counts alone. The halves of orders
            # asked again are asked again too (`again`: an empty answer leaves them out).
            log.debug(
                "ccnow.batch_split",
                extra={"fields": {"account": self._config.name, "orders": len(batch)}},
            )
            split, whole = splits.start(len(batch), split)
            splits.halved = True
            middle, answered = len(batch) // 2, False
            for half in (batch[:middle], batch[middle:]):
                if not splits.post(split):
                    split.unasked = True
                    splits.unasked(len(half))
                    await failures.failed(half, exc, "protocol", time.time(), counted=False)
                    continue
                answered = await handle(half, split, again) or answered
            if whole and (not answered or split.suspect):
                failures.count(exc, "protocol", len(batch))
            elif whole and not split.unasked:
                failures.reset()
            return answered

        try:
            await drain(batches, handle, self._config.concurrency)
            failures.finish()
        finally:
            splits.log()

    async def _decide(self, first: OrderLine) -> Observation:
        """Ask again, alone, about the order of an answer's undecided last line. The second
        answer decides when it is whole, or when its line is the first's as read (the same
        OrderLine: a cut does not land twice at the same byte); else that order alone fails
        this pass. An answer about the whole account (a refused login, maintenance) raises, as
        a batch's."""
        order_id = first.order_id
        key = OrderKey("ccnow", self._config.name, order_id)
        try:
            answer, asked, again = await self._post([order_id])
        except RequestFailed as exc:
            return Observation(key, Outcome.FAILED, reason=exc.word, asked=exc.sent_at)
        except ProtocolError:
            return Observation(key, Outcome.FAILED, reason="protocol", asked=time.time())
        if again is not None and again.order_id == order_id:
            # The same line as read (status, error, what the parser took of it), not as
            # written: `123456789 PENDING` and `123-45-6789 pending` are one answer. A status
            # that is a documented word's start is no status however often it comes (`pendi`
            # of a script dying at the same byte: `pending -> pendi` and back).
            if again != first or (again.status is not None and word_start(again.status)):
                reason = "another when asked again" if again != first else "again when asked again"
                log.warning(
                    "ccnow.answer_cut",
                    extra={
                        "fields": {
                            "account": self._config.name,
                            "order_id": order_id,
                            "reason": f"last line without its line end, {reason}",
                        }
                    },
                )
                return Observation(key, Outcome.FAILED, reason="truncated_answer", asked=asked)
            answer = replace(answer, orders=(*answer.orders, again))
        return match(self._config.name, [order_id], answer, asked)[0]

    async def _post(self, order_ids: list[str]) -> tuple[Answer, float, OrderLine | None]:
        """Post one request (the pending list when `order_ids` is empty); return its answer,
        parsed, when the attempt that brought it was sent, and its last line when that alone
        is undecided (left out of the answer)."""
        fields = list(self._fields)
        for n, order_id in enumerate(order_ids, 1):
            fields += [(f"x_orderid_{n}", order_id), (f"x_action_{n}", "query")]
        reply = await request(
            self._session,
            "POST",
            self._url,
            headers=self._headers,
            data=urlencode(fields).encode("ascii"),
            timeout=self._timeout,
            gate=self._gate,
            retry=self._config.retry,
            max_body=MAX_BODY_BYTES,
            log=log,
            complete=read_complete,
            halt=self._halt,
        )
        if reply.status in (401, 403):
            raise AuthenticationFailed(f"http {reply.status}")
        if reply.status != 200:
            raise ProtocolError(f"http {reply.status}")
        try:
            answer = parse_answer(reply.body, secrets=self._secrets, asked=order_ids)
        except SourceError as exc:
            # parse_answer masked what it quoted; this catches anything it did not foresee.
            text = str(exc)
            masked = redact(text, self._secrets)
            kind = type(exc)
            if kind is ProtocolError and order_ids and speaks_ccnow(reply.body):
                kind = UnreadableAnswer
            raise (exc if masked == text and kind is type(exc) else kind(masked)) from None
        answer, last = drop_line(answer, read_undecided(reply))
        if last is not None:
            log.debug(
                "ccnow.last_line_undecided",
                extra={"fields": {"account": self._config.name, "order_id": last.order_id}},
            )
        log.debug(
            "ccnow.answer",
            extra={"fields": {"asked": len(order_ids), "lines": len(answer.orders)}},
        )
        return answer, reply.sent_at, last
