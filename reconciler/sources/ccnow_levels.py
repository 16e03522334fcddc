"""A CCNow query batch whose answer holds a line no asked order's can be read from, asked again
level by level (`by_levels`), and such lines that come in every answer whatever was asked, an
account's noise (`Noise`): sources/ccnow_query.py `BatchQuery.levels`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from reconciler.sources.ccnow_answer import Answer, OrderLine
from reconciler.sources.ccnow_batches import Split, Splits, UnreadableAnswer
from reconciler.sources.errors import ProtocolError
from reconciler.sources.http import RequestFailed

log = logging.getLogger("reconciler.sources.ccnow")

# A part whose answer has a line that cannot be read, with that answer.
OddPart = tuple[list[str], UnreadableAnswer]
# Ask one part (`BatchQuery.handle`); a part of several orders whose answer has a line that
# cannot be read is put in the list given, to be halved at the next level.
AskPart = Callable[[list[str], list[OddPart]], Awaitable[bool]]
# Decide a part by the lines of its answer that read (`BatchQuery.handle`, `given`).
DecidePart = Callable[[list[str], UnreadableAnswer], Awaitable[bool]]
# Post one order alone: its answer when it holds a line that cannot be read, else None.
Hear = Callable[[str], Awaitable[UnreadableAnswer | None]]


class Heard:
    """An account's noise heard (`Noise.lines`, 0: none), kept by its client across queries:
    a query of one order or a few hears none (its halves are orders alone, each failing
    `protocol`), and a poll after the catch-up asks the orders due, often so few: each
    failed, poll after poll, their changes never seen. Forgotten at an answer holding no
    such line (the noise gone, an order's own odd line fails it alone again)."""

    def __init__(self) -> None:
        self.lines = 0


class Noise:
    """Lines no order's can be read from in every answer of an account's query, whatever it
    asked (a stray line of CCNow's program): the halves of a part hold more of them together
    than the part did (a line of an order's is in one half only), and a post of one order
    of a half holding just those, alone, holds as many beside that order's own line. Such a
    line belongs to no order: halving on found each order alone and failed it, ~30 posts a
    batch of 25, until the breaker opened.
    Once heard (the account's, `Heard`), an answer holding just so many is decided by its
    lines that read, with no more posts (one warning a query hearing it). Not heard when the
    order alone answers without them (a line in every answer of several orders: halved on, as
    before, `Split.suspect`)."""

    def __init__(self, account: str, heard: Heard) -> None:
        self._account = account
        self._heard = heard  # such lines in every answer, the account's; 0: none heard
        self._asked = False  # an order alone was posted to hear it (once a query)

    @property
    def lines(self) -> int:
        return self._heard.lines

    def gone(self) -> None:
        """An answer held no line that cannot be read: no noise (any more)."""
        self._heard.lines = 0

    def more(self, part: UnreadableAnswer, halves: list[UnreadableAnswer]) -> int:
        """The lines a part's two halves hold more than the part (a half that read: none),
        when an order alone is yet to be asked whether they are noise."""
        extra = sum(h.odd for h in halves) - part.odd
        # Heard before (another query's): asked again only when they are more or fewer now.
        return 0 if extra <= 0 or self._asked or extra == self.lines else extra

    def heard(self, extra: int, order_id: str, alone: UnreadableAnswer | None) -> None:
        """An order asked alone, after halves holding `extra` lines more than their part:
        its answer holds its own line and just so many more, or they are no noise."""
        self._asked = True
        read = () if alone is None or alone.answer is None else alone.answer.orders
        if alone is None or alone.odd != extra or order_id not in {o.order_id for o in read}:
            return
        self._heard.lines = extra
        fields = {"account": self._account, "lines": extra, "reason": str(alone)}
        log.warning("ccnow.answer_noise", extra={"fields": fields})

    def only(self, said: UnreadableAnswer) -> bool:
        """Whether an answer's odd lines are the noise alone, its other lines read."""
        return bool(self.lines) and said.odd == self.lines and said.answer is not None


async def alone(
    post: Callable[[list[str]], Awaitable[tuple[Answer, float, OrderLine | None]]],
    order_id: str,
) -> UnreadableAnswer | None:
    """Post one order alone (`Hear`): its answer when it holds a line that cannot be read."""
    try:
        await post([order_id])
    except UnreadableAnswer as said:
        return said
    except (RequestFailed, ProtocolError):
        pass  # no noise heard: halved on as before
    return None


def speaker(part: list[str], said: UnreadableAnswer) -> str | None:
    """The first order of a part whose status its answer read, to be asked alone whether the
    answer's odd lines are noise. Not the part's first order as such: one CCNow answers no
    line of its own for (or one that cannot be read) answers none alone either, and the
    query's one post hearing the noise was spent on it (the noise not heard, healthy orders
    halved down to each alone, and the account failed when it was its batch's first)."""
    read = {o.order_id for o in said.answer.orders if o.status is not None} if said.answer else ()
    return next((i for i in part if i in read), None)


async def by_levels(
    batch: list[str],
    said: UnreadableAnswer,
    split: Split,
    splits: Splits,
    ask: AskPart,
    noise: Noise,
    decide: DecidePart,
    hear: Hear,
) -> tuple[bool, list[list[str]]]:
    """Ask a batch again level by level: its halves, then the halves of each half still odd
    (its answer holding a line that cannot be read), and so on down to the order alone, each
    part that reads applied at once; return whether some part answered, and the parts not
    asked. k odd orders cost at most 2k posts a level, ceil(log2 n) levels (depth first, 20
    odd orders first of 25 used every post in the first half, the healthy orders after them
    never asked). Past the batch's posts (`Split`), the parts not asked are not failed when
    its posts decided some order (a part read, or an order found alone): nothing was said of
    them, and they are asked at the next poll (their checks still due; a catch-up's, within
    it: ccnow_carry.py, CARRY_POLLS in a row at most), each poll finding more odd orders alone,
    which then wait for their failure's backoff (`BatchQuery.levels` fails them when none was
    decided: the next poll would ask the same parts again). Halves holding more such lines
    together than their part, and an order of a half holding just those lines whose status
    that half's answer read (`speaker`), alone, as many beside its own line (`Noise`, one post
    a query besides the batch's): the parts holding the noise alone are decided by their
    lines that read, the others halved on."""
    split.levels = True
    answered = False
    unasked: list[list[str]] = []
    level: list[OddPart] = [(batch, said)]
    while level:
        odd: list[OddPart] = []
        for part, part_said in level:
            middle, first = len(part) // 2, len(odd)
            both = True
            for half in (part[:middle], part[middle:]):
                if splits.post(split):
                    answered = await ask(half, odd) or answered
                else:
                    both = False
                    splits.unasked(len(half), split)
                    unasked.append(half)
            halves = odd[first:]
            extra = noise.more(part_said, [h for _, h in halves]) if both else 0
            # A half holding the extra lines alone (no order's of its own, were they noise):
            # an order of it alone answers them beside its line, or they are no noise.
            asked = next((i for h in halves if h[1].odd == extra and (i := speaker(*h))), None)
            if extra and asked is not None:
                noise.heard(extra, asked, await hear(asked))
            noisy = [o for o in odd if noise.only(o[1])]
            odd[:] = [o for o in odd if not noise.only(o[1])]
            for half, half_said in noisy:
                answered = await decide(half, half_said) or answered
        level = odd
    return answered, unasked
