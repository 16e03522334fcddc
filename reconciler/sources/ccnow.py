"""CCNow Order Update API client: the pending list and batched order queries (the answer
parser is ccnow_answer.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import partial
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from reconciler import USER_AGENT
from reconciler.config import CCNowConfig
from reconciler.model import (
    Observation,
    OrderKey,
    Outcome,
    ccnow_id,
)
from reconciler.redact import answer_secrets, redact
from reconciler.sources.ccnow_answer import (
    BLANKS,
    LINE_END,
    LOGGED_IDS,
    SPACE,
    Answer,
    EmptyAnswer,
    OddLines,
    OrderLine,
    answer_text,
    by_id,
    parse_answer,
    same_answer,
    speaks_ccnow,
)
from reconciler.sources.ccnow_batches import Probe, UnreadableAnswer
from reconciler.sources.ccnow_carry import Carries
from reconciler.sources.ccnow_cut import (
    ListCuts,
    drop_line,
    read_complete,
    read_last_line,
    word_start,
)
from reconciler.sources.ccnow_levels import Heard
from reconciler.sources.ccnow_match import Emit, match
from reconciler.sources.ccnow_query import BatchQuery
from reconciler.sources.errors import (
    AuthenticationFailed,
    ProtocolError,
    SourceError,
)
from reconciler.sources.http import RequestFailed, request
from reconciler.sources.rest import AccountRest

log = logging.getLogger("reconciler.sources.ccnow")

# A pending list of tens of thousands of orders is well below this.
MAX_BODY_BYTES = 8 * 1024 * 1024
# The error of an answer's last line cut just after its order id: no word of CCNow's (an
# unreadable status, `pending (awaiting)`, is), so the same again when asked alone is a cut.
CUT_AT_ID = "cut after its order id"
# Query batches failing in a row (at least; twice the concurrency with more workers) that say
# CCNow is down: asking the remaining batches, each with its retries, would only prolong it.
BREAKER_BATCHES = 3


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
        long_wait_ends: bool = False,
        rest: AccountRest | None = None,
    ) -> None:
        self._config = config
        self._rest = rest  # the account's (a coordinator's client): each post holds it
        # A write's read: a Retry-After longer than a retry may wait ends the request, and the
        # longest one asked is kept (`asked_wait`) for the write to wait as long.
        self._long_wait_ends = long_wait_ends
        self.asked_wait: float | None = None
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
        self._carries = Carries()  # the orders its queries carried to the next (ccnow_carry.py)
        self._heard = Heard()  # the noise its queries heard (ccnow_levels.py)

    async def pending_list(self) -> list[Observation]:
        """Return the orders CCNow lists as pending, as OK observations with their status.

        A line that says no status (one that is not a status word, an error, two lines that
        disagree, one no order id can be read from) is left out, with one warning per answer
        naming them. A followed order on it is not on the list as read: a catch-up queries it
        on its own, as a poll does one the read before named (it left the list), and a due
        tick any other; that answer is its check. One nobody follows is no check of the
        account's at all. Order lines beside `message no_pending_orders` (either first) are a
        malformed answer: ProtocolError, the account's pending list failing."""
        answer, asked, last = await self._post([])  # as of the attempt that brought it
        if answer.messages and (answer.orders or last is not None):
            # NOTES: one line per order, or the single line `message no_pending_orders`. Both
            # contradict each other: which orders are pending cannot be told, and neither
            # reading may move a snapshot (the lines' orders kept, or the others queried).
            raise ProtocolError(
                "pending list says message no_pending_orders and lists orders: malformed"
            )
        lines, disagreeing = by_id(answer, words=False)
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
        *,
        probe: Probe | None = None,
        catch_up: bool = False,
    ) -> None:
        """Query orders in batches and await `emit` for each.

        A batch whose answer does not come (a 5xx or 429 after its retries, a timeout, a page, a
        cut answer) fails its own orders, and the other batches go on; one whose answer holds a
        line no asked order's can be read from is asked again level by level (`by_levels`), one
        that got a 5xx (but a 503 or a 504: a CGI dying at a bad id) in halves, down to the
        order alone, so that only that order fails (within a bound of posts a batch, up to
        FOUND_ORDERS shares, `Split`: past it, the parts not asked are asked at the next poll,
        at CARRY_POLLS polls in a row at most, the last failing them, and within a `catch_up`
        again in it, a round a poll; or fail for a 5xx or when its posts decided no order; one
        warning a pass counts them;
        both halves of a 5xx failing while no part answered, and a query of another order
        failing too, stop it: an outage,
        whose later batches fail whole until one answers). The orders an answer that was read
        left out, when it held a line of another asked order (the order's error line, a cut last
        line after a line read), are asked again from the same posts, in a post of their own; an
        answer holding none of them fails the first `missing` (CCNow stopped at it) when the
        answer that left them out came in the order asked, else asks them again in halves; one
        left out alone or past the posts fails `missing`. A batch's own post reading none of
        several (nothing, or no line of theirs) asks the others once more, then its halves (a bad
        id first in CCNow's own order): none again, every order fails as before (`protocol`,
        `missing`). The account fails (this raises) when no
        batch answers (but failures `probe` finds the account answering through, a query of
        another order, or answers naming the orders asked in CCNow's words, unreadable: those
        orders' failures alone), when BREAKER_BATCHES batches
        fail in a row (one asked in parts counts once: when none of its parts answered, or some
        were not asked unless it found its odd order alone and read a part of several, or when
        it earned more posts without reading a part of several: `Split.suspect`; one whose
        left-out orders were asked again answered), or at an answer about the whole account (a
        refused login, maintenance, a `message`)."""
        await BatchQuery(
            self._config,
            self._post,
            self._decide,
            emit,
            breaker_limit=self._breaker_limit,
            probe=probe,
            carries=self._carries,
            heard=self._heard,
        ).run(order_ids, catch_up=catch_up)

    def carried(self) -> frozenset[str]:
        """The orders its queries carried to their next poll (`ccnow_carry.Carries`)."""
        return frozenset(self._carries.counts)

    def forget_carried(self, order_ids: Iterable[str]) -> None:
        """Forget carried orders no longer followed: never asked again, they were kept."""
        self._carries.forget(order_ids)

    async def _decide(self, first: OrderLine) -> Observation:
        """Ask again, alone, about the order of an answer's undecided last line. The second
        answer decides when it is whole, or when its line is the first's as read (one answer,
        `same_answer`: a cut does not land twice at the same byte); else that order alone fails
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
            # The same line as read, by the rule every other comparison of an order's lines
            # follows (`same_answer`): `123456789 PENDING` and `123-45-6789 pending` are one
            # answer, and so are `On_Hold` and `on_hold` (a cut line asked again compared them
            # as written: its order failed this pass). A status that is a documented word's
            # start is no status however often it comes (`pendi` of a script dying at the
            # same byte: `pending -> pendi` and back).
            same = same_answer(again, first)
            if (
                not same
                or again.error == CUT_AT_ID
                or (again.status is not None and word_start(again.status))
            ):
                reason = "again when asked again" if same else "another when asked again"
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
        try:
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
                complete=partial(read_complete, query=True) if order_ids else ListCuts(),
                halt=self._halt,
                long_wait_ends=self._long_wait_ends,
                rest=self._rest,
            )
        except RequestFailed as exc:
            if exc.wait is not None:
                self.asked_wait = max(self.asked_wait or 0.0, exc.wait)
            raise
        if reply.status in (401, 403):
            raise AuthenticationFailed(f"http {reply.status}")
        if reply.status != 200:
            raise ProtocolError(f"http {reply.status}")
        cut_at_id, undecided = read_last_line(reply, query=bool(order_ids))
        body = reply.body if cut_at_id is None else cut_at_id[0]
        try:
            if cut_at_id is not None and not body.strip():
                if cut_at_id[1] is None:
                    # Cut in its first line's id: no line of CCNow's at all, a malformed answer
                    # as an empty one is (a source error, the breaker's when it is every post's;
                    # no word about the orders, which failed each `missing` for ever).
                    raise EmptyAnswer("answer cut in its first order id")
                answer = Answer((), ())  # cut just after its first line's id
            else:
                answer = parse_answer(body, secrets=self._secrets, asked=order_ids)
        except SourceError as exc:
            # parse_answer masked what it quoted; this catches anything it did not foresee.
            text = str(exc)
            masked = redact(text, self._secrets)
            kind = type(exc)
            if kind in (ProtocolError, OddLines) and order_ids and speaks_ccnow(body):
                names = names_asked(body, order_ids)
                odd, read = (exc.odd, exc.answer) if isinstance(exc, OddLines) else (1, None)
                # Its last line undecided (a word cut short, `proc`): the lines that read do
                # not decide it as the noise alone (`proc` taken for a status), it is halved.
                read = None if undecided is not None else read
                raise UnreadableAnswer(
                    masked, names=names, odd=odd, answer=read, asked=reply.sent_at
                ) from None
            raise (exc if masked == text and kind is type(exc) else kind(masked)) from None
        if cut_at_id is None:
            answer, last = drop_line(answer, undecided)
        elif (cut_id := cut_at_id[1]) is not None:
            last = OrderLine(cut_id, None, CUT_AT_ID, unreadable=True)
        else:
            last = None
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


def names_asked(body: bytes, asked: Sequence[str]) -> bool:
    """Whether an answer holds a line of an asked order's in CCNow's words (its id, then more):
    CCNow's program ran the post and answered about that order."""
    ids = set(asked)
    for raw in LINE_END.split(answer_text(body)):
        first, *more = BLANKS.split(raw.strip(SPACE), maxsplit=1)
        if more and ccnow_id(first) in ids:
            return True
    return False
