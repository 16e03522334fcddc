"""A pass's CCNow query batches that got no answer, and those asked again in parts: what
fails whose orders, and what counts in the circuit breaker's run (sources/ccnow.py)."""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Awaitable, Sequence
from typing import Protocol

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.sources.ccnow_answer import Answer
from reconciler.sources.ccnow_match import MISSING, Emit
from reconciler.sources.errors import ProtocolError, SourceError, SourceUnavailable
from reconciler.sources.http import RequestFailed

log = logging.getLogger("reconciler.sources.ccnow")


class Said(enum.Enum):
    """What the probe found: whether the account answers a query of another order."""

    ANSWERS = "answers"  # CCNow's word about that order (or, `lists`, the pending list read)
    FAILS = "fails"  # its post got no such word: counted in the breaker's run as a batch's
    FAILING = "failing"  # nothing posted: the account fails already (`tick_due` probes it)
    NO_OTHER = "no_other"  # nothing posted: no other order to ask, and `lists` was False


# Whether the account answers, asked when a query's failures may be its orders' own (posts of
# one order alone each; both halves of a 5xx batch): those orders' trouble, or CCNow's? `asked`:
# the orders not to ask; `read`: orders this query read, the freshest to ask (the probe chooses,
# poller/ccnow.py); `lists`: the pending list may answer when no other order can be asked.
# `spoke`: the query's own answers named orders asked in CCNow's words, unreadable (odd
# orders, `UnreadableAnswer.names`): the account answers, and the probe asks nothing.
class Probe(Protocol):
    def __call__(
        self,
        asked: Sequence[str],
        *,
        lists: bool = True,
        read: Sequence[str] = (),
        spoke: bool = False,
    ) -> Awaitable[Said]: ...


class UnreadableAnswer(ProtocolError):
    """CCNow answered a query in its protocol, with a line no asked order's could be read
    from: one of its orders may be the cause, each asked alone is not. `names`: it held a
    line of an asked order's too, CCNow's program answering about it (`Split.spoke`). `odd`:
    such lines, besides the lines that read (`answer`, asked at `asked`; ccnow_levels.py)."""

    def __init__(
        self,
        message: str,
        *,
        names: bool = False,
        odd: int = 1,
        answer: Answer | None = None,
        asked: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.names, self.odd, self.answer, self.asked = names, odd, answer, asked


def one_orders(exc: RequestFailed) -> bool:
    """Whether a post's failure may follow one of its orders: a 5xx but a 503 or a 504 (a CGI
    dying at a bad id answers 500, or its gateway 502); a 503, a 504 (its gateway's timeout,
    as a timeout of ours), a 429, a timeout or no connection say CCNow is down or busy,
    whatever it was asked."""
    status = exc.http_status
    return status is not None and 500 <= status < 600 and status not in (503, 504)


def in_order(batch: Sequence[str], answer: Answer) -> bool:
    """Whether an answer's lines of asked orders are those of the first ones asked, in the
    order asked, two at least: then CCNow answers in the order asked, and the first it left out
    is the one it stopped at. NOTES lets it answer in another order."""
    asked = set(batch)
    read = list(dict.fromkeys(o.order_id for o in answer.orders if o.order_id in asked))
    return len(read) >= 2 and read == list(batch[: len(read)])


# Odd orders (a line that cannot be read, in the answers asking that order) a batch asked
# again in parts finds alone, each with a share of posts of its own. An account has a few of
# thousands, and batches are made the same way pass after pass: with one share, a second odd
# order in a batch of 25 failed 6-9 healthy orders, every pass (their changes never found).
# With three, any two or three odd orders in a batch fail only themselves (each of the 2,300
# ways three sit in 25); past them a batch of n costs at most three shares, not one post an
# order, and its parts not asked wait for the next poll (`by_levels`; for a 5xx they fail).
FOUND_ORDERS = 3


class Split:
    """A batch asked again in parts: the posts it has left, a share enough to find one order
    whose line cannot be read (two a halving: else a line in every answer of several orders
    asks each order alone, a pass of thousands of posts competing with the account's action
    posts for its gate), a share more for each order found alone while some part answered,
    or, asked level by level, while CCNow answers (up to FOUND_ORDERS shares), whether some
    part went unasked, and what the parts found.
    The orders an answer that was read left out (CCNow stopping at a bad id, or answering so
    many lines a post) are asked again from the same posts, in a post of their own, each post
    reading at least one of them or failing one (sources/ccnow.py `query`): they earn no
    share.

    Bound: a batch of n orders is asked again, in parts and for the orders its answers left
    out alike, in at most FOUND_ORDERS x 2*ceil(log2 n) posts (30 for 25), past one share
    (10 for 25) only once it found an order alone (level by level: once CCNow answered); a
    pass of b batches posts at most
    b x (1 + FOUND_ORDERS x 2*ceil(log2 n)) queries, besides asking again about an answer's
    undecided last line and the probe's posts (a batch halved for a 5xx, and a query none of
    whose batches answered, each ask one order, two when the first fails: `BatchQuery._answers`,
    `BatchFailures.finish`, poller/witnesses.py; and one order alone a query, `Noise`).
    Finding k odd orders level by level asks at most 2k parts a level, ceil(log2 n) levels;
    a share is earned when the posts ran out
    (`more`, checked before each part), so the parts still to come use it, whichever half the
    next odd order is in."""

    def __init__(self, orders: int) -> None:
        self.share = self.posts(orders)
        self.left = self.share
        self.shares = 1
        self.unasked = False
        self.found = 0  # orders alone whose line cannot be read
        self.several = False  # a part of several orders answered
        self.read = False  # a part answered, of one order or several
        # An answer, unreadable, held a line of an asked order's (`UnreadableAnswer.names`):
        # CCNow answers, and the parts to come may read (many odd orders first in a batch
        # used its one share up before any part read, the account failing with them).
        self.spoke = False
        # Both halves failed, none read, and a post of one order alone answered: not an
        # outage, the halves are halved in turn (`BatchQuery.halves`).
        self.answers = False
        # Asked again level by level (`by_levels`), for an answer a line of which cannot be
        # read: its shares are earned by CCNow answering, not by orders found alone.
        self.levels = False

    @property
    def isolates(self) -> bool:
        """Whether the parts found an odd order alone while reading others together: its
        account answers, the batch had more odd orders than its posts could find."""
        return self.found > 0 and self.several

    @property
    def suspect(self) -> bool:
        """Whether the batch counts in the breaker's run though some part answered: parts left
        unasked, unless it found an odd order alone and read a part of several; or shares
        earned while no part of several orders answered (a line in every answer of several
        orders beside odd orders: each order answers alone only, a pass of posts for ever)."""
        return (self.unasked and not self.isolates) or (self.shares > 1 and not self.several)

    def more(self) -> bool:
        """Whether a part may be posted: the posts left, or a share more for an order found
        alone since the last share while some part answered (two odd orders: the other
        orders answer, alone or together) or some answer named an asked order (`spoke`:
        many odd orders first); asked level by level (`levels`), a share more while some part
        answered or some answer named an asked order, found or not. None for every answer
        unreadable naming none, nor, halved for a 5xx, for a line in every answer of several
        orders (found never set): those get the posts of one share and open the breaker (a
        line in every answer naming orders gets its shares, within the bound, and opens it
        all the same when no part of several orders read: `suspect`)."""
        answers = self.read or self.spoke
        # Asked level by level, orders are found alone only at the last levels: the shares
        # are the answers' (each level posts at most two parts an odd part of the last).
        found = self.levels or self.shares <= self.found
        earned = answers and found and self.shares < FOUND_ORDERS
        if self.left <= 0 and earned:
            self.shares += 1
            self.left += self.share
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    @staticmethod
    def posts(orders: int) -> int:
        """The posts of one share: enough to find one order of `orders` by halving."""
        return 2 * math.ceil(math.log2(max(1, orders)))


class BatchFailures:
    """The query batches of one pass that got no answer: each fails its own orders once some
    batch has answered (before that, a failure may be the whole account's, and writes nothing
    of the orders); none answering, or a run of them, is the account's failure."""

    def __init__(self, emit: Emit, account: str, limit: int) -> None:
        self._emit = emit
        self._account = account
        self._limit = limit
        self._answered = False
        # Held until some batch answers: (orders, word, asked).
        self._held: list[tuple[list[str], str, float | None]] = []
        self._in_a_row = 0
        # Batches in a row whose posts read none of their orders (`read_none`): answers, so
        # not in the run above, but CCNow saying nothing of any order asked.
        self._none_in_a_row = 0
        self._first: SourceError | None = None
        # A batch halved for a 5xx whose parts all failed, none answering, in this run: an
        # outage, whose later batches fail whole (halving each cost two posts more, each with
        # its retries: the breaker opened three times later).
        self.outage = False
        # Such a batch with no other order to ask (a first pass), halved down to orders alone:
        # its own parts told the outage, which the pending list answering does not undo
        # (`finish`: a first-pass outage of 3-5 orders failed them alone, the account never).
        self.told = False
        # An answer, unreadable, named an asked order in CCNow's words (odd orders): CCNow's
        # program answered, so the failures held are those orders' own (`finish`: 20 odd
        # orders of an account's only batch of 25, none read, failed the account).
        self.spoke = False
        # A batch or part got no answer in CCNow's words (a 5xx, a timeout, a page): `spoke`
        # says nothing of it.
        self._unspoken = False

    async def failed(
        self,
        batch: list[str],
        exc: SourceError,
        word: str,
        asked: float | None,
        *,
        counted: bool = True,
    ) -> None:
        """Note a batch without an answer (asked at `asked`), `counted` in the run that opens
        the breaker (raise when it does); not counted: a part of a batch asked again in parts
        (its batch counts once, `Split`)."""
        self._first = self._first or exc
        self._unspoken = self._unspoken or not isinstance(exc, UnreadableAnswer)
        if counted:
            self.count(exc, word, len(batch))
        if self._answered:
            await self._fail(batch, word, asked)
        else:
            self._held.append((batch, word, asked))

    def count(self, exc: SourceError, word: str, orders: int) -> None:
        """Count a batch without an answer in the run; raise when the run opens the breaker."""
        self._in_a_row += 1
        log.debug(
            "ccnow.batch_failed",
            extra={"fields": {"account": self._account, "orders": orders, "reason": word}},
        )
        if self._in_a_row >= self._limit:
            log.warning(
                "ccnow.circuit_open",
                extra={
                    "fields": {
                        "account": self._account,
                        "consecutive_failures": self._in_a_row,
                        "reason": word,
                    }
                },
            )
            raise SourceUnavailable(f"{self._in_a_row} batches failed in a row, last: {exc}")

    def read_none(self, none: bool, orders: int) -> bool:
        """Count a batch's own posts (the batch, its others, its halves) that read `none` of
        its orders (`missing`, each) in a run of their own, or end it; raise when the run is
        as long as the breaker's. Each such batch costs two posts or more, and an account
        answering so for every order (30,000 open: some 2,400 posts a catch-up) is failing:
        the pass's later batches wait for the next pass or probe. True: it answered."""
        if not none:
            self._none_in_a_row = 0
            return True
        self._none_in_a_row += 1
        log.debug(
            "ccnow.batch_failed",
            extra={"fields": {"account": self._account, "orders": orders, "reason": MISSING}},
        )
        if self._none_in_a_row < self._limit:
            return True
        log.warning(
            "ccnow.circuit_open",
            extra={
                "fields": {
                    "account": self._account,
                    "consecutive_failures": self._none_in_a_row,
                    "reason": MISSING,
                }
            },
        )
        raise SourceUnavailable(
            f"{self._none_in_a_row} batches failed in a row, last: no line of any order asked"
            f" ({MISSING})"
        )

    def counted(
        self, whole: bool, answered: bool, split: Split, exc: SourceError, word: str, orders: int
    ) -> None:
        """Count a batch asked in parts (`whole`: its own, not a part's) in the breaker's run,
        or end the run (`BatchQuery.halves`, `Split.suspect`)."""
        if whole and (not answered or split.suspect):
            self.count(exc, word, orders)
        elif whole and not split.unasked:
            self.reset()

    def reset(self) -> None:
        """End the breaker's run: a batch asked in parts whose parts were all asked answered."""
        self._in_a_row = 0
        self.outage = False

    async def answered(self, *, reset: bool = True) -> None:
        """Note a batch that answered (`reset`: a whole batch, not a part of one, which ends
        the run only with its batch): the failed ones are their orders' failures alone."""
        if reset:
            self.reset()
        self._answered = True
        held, self._held = self._held, []
        for batch, word, asked in held:
            await self._fail(batch, word, asked)

    async def finish(self, probe: Probe | None) -> None:
        """Raise the first batch's failure when no batch answered, unless `probe` finds the
        account answering: then they are those orders' failures alone (DESIGN invariant 7;
        else orders CCNow cannot answer, due together at their failures' backoff, failed the
        account, and the next check of another recovered it, forgetting their failures, so
        they came due at once again: `source.failed` / `source.recovered` every few seconds,
        whether asked alone, as several none of whose posts read a line (two silent ones), or
        as parts past a 5xx batch's posts (more odd orders than its shares find alone: 4 of
        500 among 7 odd ones)); not when a batch's parts told an outage (`told`). The pending
        list answers for the account only for orders alone (an outage answering nothing to
        every query may leave it answering)."""
        if self._first is None or self._answered:
            return
        orders = [order_id for batch, _, _ in self._held for order_id in batch]
        lists = all(len(batch) == 1 for batch, _, _ in self._held)
        if self.spoke and not self.told and not self._unspoken:
            # CCNow answered about them: the probe is told (its pass's checks, failing, then
            # say nothing of the account), and asks nothing. Not when other batches got no
            # answer (a 5xx, a timeout): the odd orders' answers say nothing of those, an
            # outage beginning in the pass would be written as those orders' own failures.
            if probe is not None:
                await probe(orders, lists=lists, spoke=True)
            await self.answered(reset=False)
            return
        if (
            probe is not None
            and orders
            and not self.told
            and await probe(orders, lists=lists) is Said.ANSWERS
        ):
            await self.answered(reset=False)
            return
        raise self._first

    async def _fail(self, batch: list[str], word: str, asked: float | None) -> None:
        for order_id in batch:
            key = OrderKey("ccnow", self._account, order_id)
            await self._emit(Observation(key, Outcome.FAILED, reason=word, asked=asked))


class Splits:
    """A pass's batches asked again, in parts or for the orders an answer left out (their
    `Split`s), and its one `ccnow.batches_split` line counting them."""

    def __init__(self, account: str) -> None:
        self._account = account
        self.counts = dict.fromkeys(("batches", "posts", "unasked", "missing"), 0)
        self.halved = False  # some batch or part asked again in halves

    def start(self, orders: int, split: Split | None) -> tuple[Split, bool]:
        """The Split of a batch of `orders` asked again, and whether it is new (the batch asked
        whole until now: counted once)."""
        if split is not None:
            return split, False
        self.counts["batches"] += 1
        return Split(orders), True

    def halve(self, orders: int, split: Split | None) -> tuple[Split, bool]:
        """`start`, for a batch or part asked again in halves (`BatchQuery.halves`, `levels`)."""
        log.debug(
            "ccnow.batch_split", extra={"fields": {"account": self._account, "orders": orders}}
        )
        self.halved = True
        return self.start(orders, split)

    def asked_again(self, orders: int) -> None:
        """Count orders an answer left out, asked again (once an order)."""
        self.counts["missing"] += orders

    def unasked(self, orders: int, split: Split) -> None:
        """Count orders of parts not asked, past a batch's posts (`split`'s)."""
        split.unasked = True
        self.counts["unasked"] += orders

    def post(self, split: Split) -> bool:
        """Whether a part may be posted (`Split.more`), counted when it may."""
        if not split.more():
            return False
        self.counts["posts"] += 1
        return True

    def log(self) -> None:
        """Log the pass's count: a warning when a batch was halved or some part went unasked;
        only orders left out asked again is the INFO of a healthy account whose CCNow leaves
        one order out of a batch, pass after pass (each fails its own check `missing`)."""
        if not self.counts["posts"]:
            return
        level = logging.WARNING if self.halved or self.counts["unasked"] else logging.INFO
        fields = {"account": self._account, **self.counts}
        log.log(level, "ccnow.batches_split", extra={"fields": fields})
