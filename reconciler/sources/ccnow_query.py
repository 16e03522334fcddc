"""One `CCNowClient.query`: its batches posted, the answers that may be one order's trouble
asked again in parts, and what fails whose orders (sources/ccnow.py; the counts and the
breaker's run: ccnow_batches.py)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from reconciler.config import CCNowConfig
from reconciler.model import Observation, Outcome
from reconciler.sources.ccnow_answer import Answer, EmptyAnswer, OrderLine
from reconciler.sources.ccnow_batches import (
    BatchFailures,
    Probe,
    Said,
    Split,
    Splits,
    UnreadableAnswer,
    in_order,
    one_orders,
)
from reconciler.sources.ccnow_carry import Carried, Carries
from reconciler.sources.ccnow_levels import Heard, Noise, OddPart, alone, by_levels
from reconciler.sources.ccnow_match import MISSING, Emit, in_batches, match, missing_lines
from reconciler.sources.errors import ProtocolError, SourceError
from reconciler.sources.http import RequestFailed, drain

log = logging.getLogger("reconciler.sources.ccnow")

Post = Callable[[list[str]], Awaitable[tuple[Answer, float, OrderLine | None]]]
Decide = Callable[[OrderLine], Awaitable[Observation]]


class BatchQuery:
    """The posts of one query of orders (`CCNowClient.query` tells the rules): `post` asks
    CCNow, `decide` an answer's undecided last line alone."""

    def __init__(
        self,
        config: CCNowConfig,
        post: Post,
        decide: Decide,
        emit: Emit,
        *,
        breaker_limit: int,
        probe: Probe | None,
        carries: Carries,
        heard: Heard,
    ) -> None:
        self._config = config
        self._post = post
        self._decide = decide
        self._emit = emit
        self._probe = probe
        self._failures = BatchFailures(emit, config.name, breaker_limit)
        self._splits = Splits(config.name)  # this pass's, for its one log line
        self._carried = Carried(carries, config.name)
        self._noise = Noise(config.name, heard)  # a stray line of every answer, once heard
        self._read: deque[str] = deque(maxlen=5)  # orders read, the last few (`_answers`)
        self._silent = False  # a batch's halves read none, and no batch read since (`others`)

    async def run(self, order_ids: Sequence[str], *, catch_up: bool = False) -> None:
        """Ask about the orders, a batch at a time; raise for the account. `catch_up`: the
        orders carried are asked again within it, a round a poll (`Carried.take`)."""
        config, emit, again = self._config, self._emit, order_ids
        try:
            while again:  # a one-shot catch-up has no next poll (it counted them nowhere)
                await drain(await in_batches(config, again, emit), self.handle, config.concurrency)
                again = self._carried.take() if catch_up else ()
            await self._failures.finish(self._probe)
        finally:
            self._carried.end(order_ids)
            self._splits.log()

    async def handle(
        self,
        batch: list[str],
        split: Split | None = None,
        again: bool = False,
        tentative: bool = False,
        *,
        ordered: bool = False,
        deferred: list[RequestFailed] | None = None,
        odd: list[OddPart] | None = None,
        given: UnreadableAnswer | None = None,
    ) -> bool:
        """Post a batch, or a part of one; return whether it answered (for `drain`).

        `again`: orders an answer left out, asked again (`ask_again`), or a part of them, and
        `ordered`: that answer's lines came in the order asked (`stopped`). `tentative`: a
        batch's others (`others`): False, emitting nothing, when none is read. `deferred`: a
        half of a batch a 5xx followed (`halves`), whose own 5xx is put there, its
        orders not failed yet. `odd`: a part of a batch asked level by level (`levels`), put
        there when its answer has a line that cannot be read, to be halved at the next;
        `given`: its answer then, its odd lines found the noise alone (`Noise`)."""
        failures, name = self._failures, self._config.name
        try:
            if given is not None:
                raise given  # as posted: decided by its lines that read, below
            answer, asked, last = await self._post(batch)
            self._noise.gone()  # an answer without it: no noise
        except RequestFailed as exc:
            if tentative:
                return False
            if one_orders(exc) and deferred is not None:
                deferred.append(exc)
                return False
            if one_orders(exc) and len(batch) > 1 and not (split is None and failures.outage):
                return await self.halves(batch, exc, split, again)
            await failures.failed(batch, exc, exc.word, exc.sent_at, counted=split is None)
            return False  # the next batch goes alone until one answers (drain)
        except UnreadableAnswer as exc:
            if not self._noise.only(exc) or exc.answer is None:
                return await self.unreadable(batch, exc, split, again, tentative, odd)
            answer, asked, last = exc.answer, exc.asked, None  # the noise alone: no order's
        except ProtocolError as exc:
            if tentative:
                return False
            if isinstance(exc, EmptyAnswer):  # none of them, as below
                now = time.time()
                if again or (split is not None and len(batch) > 1):
                    # Also a part of a batch asked in parts (a half of a 5xx batch): CCNow may
                    # have stopped at its first order (else no part read, an outage: the
                    # account failed for two odd orders, a 5xx one and that one).
                    await self.stopped(batch, missing_lines(name, batch, now), split, ordered)
                    return True
                if split is None and len(batch) > 1 and await self.others(batch, now):
                    return True
            if split is not None and len(batch) == 1:
                # Asked alone, an odd order's answer may hold no line in CCNow's words at all
                # (`??? garbage`): found alone all the same, its share earned (else two odd
                # orders in a batch failed the healthy orders of the parts not asked).
                split.found += 1
            await failures.failed(batch, exc, "protocol", time.time(), counted=split is None)
            return False
        cut = None if last is None or last.order_id not in batch else last.order_id
        asked_ids = batch if cut is None else [i for i in batch if i != cut]
        observations = match(name, asked_ids, answer, asked)
        missing = [o for o in observations if o.reason == MISSING]
        # None of them: a line of no asked order's. Not a cut line alone (`asked_ids`): the
        # line of the first, cut; taken as a stop, a CGI dying at the same byte every post
        # would ask the others again one cut line a post.
        none = len(missing) == len(batch)
        if tentative and none:
            return False
        self._silent = self._silent and none
        await failures.answered(reset=split is None)
        if split is not None:
            split.read = True
            split.several = split.several or len(batch) > 1
        if again and none:
            await self.stopped(batch, missing, split, ordered)
            return True
        if split is None and len(batch) > 1 and none and await self.others(batch, asked):
            return failures.read_none(False, len(batch))  # its others read: the run ends
        if split is None:
            failures.read_none(none, len(batch))  # raises when the breaker opens
        # Asked again: orders an answer left out when it held a line of another asked order (CCNow
        # stopping at a bad id, or answering so many lines a post), besides a cut last line (a
        # CGI dying at the same byte every post would ask each order again). An answer of no
        # asked order's line is no answer about them (asked again, it would be the same).
        read = len(asked_ids) > 1 and len(missing) < len(asked_ids)
        for observation in observations:
            if observation.outcome is not Outcome.FAILED:
                self._read.append(observation.key.order_id)
            if not (read and observation.reason == MISSING):
                await self._emit(observation)
        if last is not None and cut is not None:
            await self._emit(await self._decide(last))
        if read and missing:
            ordered = in_order(batch, answer)
            await self.ask_again(batch, missing, split, first=not again, ordered=ordered)
        return True

    async def unreadable(
        self,
        batch: list[str],
        exc: UnreadableAnswer,
        split: Split | None,
        again: bool,
        tentative: bool,
        odd: list[OddPart] | None,
    ) -> bool:
        """A post whose answer has a line no asked order's can be read from (`handle`)."""
        failures = self._failures
        failures.spoke = failures.spoke or exc.names
        if split is not None:
            split.spoke = split.spoke or exc.names
        if len(batch) > 1 and odd is not None:
            odd.append((batch, exc))
            return False
        if len(batch) > 1:
            return await self.levels(batch, exc, split, again) or tentative
        if split is not None:
            split.found += 1
        await failures.failed(batch, exc, "protocol", time.time(), counted=split is None)
        return tentative

    async def others(self, batch: list[str], asked: float) -> bool:
        """A batch's own post of several read none of them (nothing, or no line of theirs):
        CCNow may have stopped silently at the first (a bad id first: a healthy account's
        batch failed every pass, or opened the breaker). The others are asked once more:
        read, the first fails `missing`; none again, its halves (`own_order`)."""
        splits = self._splits
        split, _ = splits.start(len(batch), None)
        splits.asked_again(len(batch) - 1)
        if not splits.post(split):
            return False
        if not await self.handle(batch[1:], split, True, True):
            # Not after such a batch of this run read none since a batch read: CCNow answers
            # nothing (nothing pending, or down), two posts a batch as before.
            return not self._silent and await self.own_order(batch, split, asked)
        await self._failures.answered()
        await self._emit(missing_lines(self._config.name, batch[:1], asked)[0])
        return True

    async def own_order(self, batch: list[str], split: Split, asked: float) -> bool:
        """A batch none of whose posts read any order, its first's or its others': CCNow may
        answer in its own order (NOTES) and stop silently at a bad id first in it, in every
        post naming it (the batch failed whole every pass, the account with it when it was
        the only batch, recovered by a probe of one order). Its halves are asked: a half
        read says the account answers, and a half that read none is asked again in halves as
        orders left out are (`stopped`), down to the order alone (`missing`). Neither read
        (nothing pending, CCNow down), False: every order fails as before, and the run's later
        batches are not halved so until a batch reads (`_silent`)."""
        read = False
        silent: list[list[str]] = []
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            if self._splits.post(split) and await self.handle(half, split, True, True):
                read = True
            else:
                silent.append(half)
        if not read:
            self._silent = True
            return False
        await self._failures.answered()
        for half in silent:
            missing = missing_lines(self._config.name, half, asked)
            await self.stopped(batch, missing, split, ordered=False)
        return True

    async def stopped(
        self, batch: list[str], missing: list[Observation], split: Split | None, ordered: bool
    ) -> None:
        """Orders left out, asked again, answered none of them (nothing, or no line of
        theirs): CCNow stopped silently at one of them (a bad id: lines before it, none for
        it or after), and the others are asked again (else each failed `missing`, pass after
        pass). When the answer that left them out came in the order asked (`in_order`), the
        first is that one and fails `missing`; else (CCNow answering in its own order, as
        NOTES allows) they are asked again in halves, so that only the bad order, alone,
        fails (blaming the first failed healthy orders every pass, their changes never
        seen). Each post still reads, drops or halves."""
        if len(missing) == 1 and split is not None:
            split.found += 1  # asked alone: found, as an odd order is, with a share more
        if ordered or len(missing) == 1:
            await self._emit(missing[0])
            if missing[1:]:
                await self.ask_again(batch, missing[1:], split, first=False, ordered=ordered)
            return
        middle = len(missing) // 2
        for half in (missing[:middle], missing[middle:]):
            await self.ask_again(batch, half, split, first=False, ordered=False)

    async def ask_again(
        self,
        batch: list[str],
        missing: list[Observation],
        split: Split | None,
        *,
        first: bool,
        ordered: bool,
    ) -> None:
        """Ask again about orders an answer left out, in one post of only those orders, within
        the batch's posts (`Split`); the answer must hold a line of one of them, or they are
        taken for a stop (`stopped`), so each post reads at least one order, drops one or
        halves them: an order left out when asked alone, or past the posts, fails `missing`.
        Its post answered: what these posts meet never counts in the breaker. Counted once an
        order, when `first` asked again."""
        split, _ = self._splits.start(len(batch), split)
        if first:
            self._splits.asked_again(len(missing))
        if not self._splits.post(split):
            for observation in missing:
                await self._emit(observation)
            return
        ids = [o.key.order_id for o in missing]
        await self.handle(ids, split, again=True, ordered=ordered)

    async def halves(
        self, batch: list[str], exc: RequestFailed, split: Split | None, again: bool
    ) -> bool:
        """Ask each half again in this pass, so that the order a 5xx follows (`one_orders`: a
        CGI dying at a bad id) fails alone and the others are decided (else it fails its
        batch, poll after poll, its healthy orders never read, and the account with it while
        its one-order probe answers; a line that cannot be read: `levels`). Past the batch's
        posts (a share more for each order found alone, up to
        FOUND_ORDERS: a second odd order failed 6-9 healthy ones, batch after batch, pass after
        pass), its parts not asked fail. A part's answer does not end the breaker's run (else
        a line in every answer of several orders never opens it, its parts answering: a few
        orders a batch read, the others never asked, pass after pass): the batch ends it when
        all its parts were asked and some answered, and counts once in it when none answered,
        or some were not asked unless it found an order alone unreadable and read a part of
        several (two odd orders in a batch: a healthy account), or when it earned more posts
        and read no part of several (`Split.suspect`). A part's own failure never counts alone.
        The halves of orders asked again are asked again too (`again`: an empty answer leaves
        them out).

        A half's own 5xx waits for both halves; one failing while some part answered is
        halved in turn, down to the order alone. Both failing while no part answered ask
        whether the account answers a query of another order (`_answers`): it does, and they
        are halved in turn; it fails, or the account fails already, an outage (four posts or
        three, not a share): the batch fails, and the run's later batches fail whole
        (`BatchFailures.outage`). No other order to ask (a first pass): halved in turn, and an
        outage when no part is read (`BatchFailures.told`)."""
        split, whole = self._splits.halve(len(batch), split)
        word = exc.word
        answered = False
        failing: list[tuple[list[str], RequestFailed]] = []
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            if not self._splits.post(split):
                self._splits.unasked(len(half), split)
                await self._failures.failed(half, exc, word, exc.sent_at, counted=False)
                continue
            deferred: list[RequestFailed] = []
            answered = await self.handle(half, split, again, deferred=deferred) or answered
            failing += [(half, failed) for failed in deferred]
        told = False  # an outage its parts tell, no other order to ask
        if whole and len(failing) == 2 and any(len(h) > 1 for h, _ in failing):
            # Both halves failing, none read: an outage, or two odd orders, one in each half
            # (halving stopped there: every pass failed the batch, the account with it when
            # it was the only batch, and the run's later batches with one odd order whole).
            said = await self._answers(batch, exc, word)
            # NO_OTHER (a first pass): the batch's own orders must tell, and its first may be
            # one of the odd ones. Halved on within its posts: an outage reads no part of it
            # (below), two odd orders leave parts read.
            split.answers = said in (Said.ANSWERS, Said.NO_OTHER)
            told = said is Said.NO_OTHER
            if not split.answers:  # FAILS, or FAILING: the account fails already
                self._failures.outage = True
        for half, failed in failing:
            if (split.read or split.answers) and len(half) > 1:
                answered = await self.halves(half, failed, split, again) or answered
                continue
            if split.read or split.answers:
                split.found += 1  # the order a 5xx follows, found alone
            await self._failures.failed(half, failed, failed.word, failed.sent_at, counted=False)
        if whole and not split.read:
            self._failures.outage = True
            # Its parts told, alone each maybe (3-5 orders): no probe of the list undoes it.
            self._failures.told = self._failures.told or told
        self._failures.counted(whole, answered, split, exc, word, len(batch))
        return answered

    async def levels(
        self, batch: list[str], exc: UnreadableAnswer, split: Split | None, again: bool
    ) -> bool:
        """Ask a batch whose answer has a line no asked order's can be read from again level
        by level (`by_levels`), so that only its odd orders fail, each alone, and the parts
        past its posts wait for the next poll. It counts in the breaker's run as a batch
        halved for a 5xx does (`halves`, `Split.suspect`)."""
        split, whole = self._splits.halve(len(batch), split)
        split.spoke = split.spoke or exc.names

        async def ask(part: list[str], odd: list[OddPart]) -> bool:
            return await self.handle(part, split, again, odd=odd)

        async def decide(part: list[str], said: UnreadableAnswer) -> bool:
            return await self.handle(part, split, again, given=said)

        splits, noise, hear = self._splits, self._noise, partial(alone, self._post)
        answered, unasked = await by_levels(batch, exc, split, splits, ask, noise, decide, hear)
        decided = split.read or split.found
        for part in unasked:
            # Its posts decided no order (a line in every answer of several orders, batches
            # of 32 or more: every post a part of several): carried, the parts not asked would
            # be the same at every poll, never checked, no check failing. They fail, as a
            # batch halved for a 5xx's do. Else carried, up to CARRY_POLLS polls in a row.
            failing = self._carried.carry(part) if decided else part
            if failing:
                await self._failures.failed(failing, exc, "protocol", time.time(), counted=False)
        self._failures.counted(whole, answered, split, exc, "protocol", len(batch))
        return answered

    async def _answers(self, batch: list[str], exc: SourceError, word: str) -> Said:
        """Whether the account answers a query of another order, the probe's choice (one this
        run read first, `read`; never the pending list, which may answer while every query
        fails). A post of it that failed counts in the breaker's run as a batch's (an outage
        costs no more posts than before this probe); nothing posted counts nothing."""
        if self._probe is None:
            return Said.NO_OTHER
        said = await self._probe(batch, lists=False, read=tuple(self._read))
        if said is Said.FAILS:
            self._failures.count(exc, word, 1)
        return said
