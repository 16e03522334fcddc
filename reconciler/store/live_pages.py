"""The pages of orders that passes hold (`Orders.page`): each holds rows of one account, so a
write outside the passes that changed some rows of one account makes only that account's pages
stale; a CCV catch-up goes on reading its own page while a CCNow hint's write lands.

A page's rows are read before it is held: a write landing meanwhile (another pass's `save` of
its rows, a drop of its account's) would leave it holding rows the write replaced, so the
read is noted (`reading`) and a page read across such a write is stale from the start."""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .order_rows import Row

_Key = tuple[str, str, str]  # an OrderKey is this tuple
Owner = tuple[str, str]  # (source, account): the rows a page holds are that account's


@dataclass(eq=False)  # no slots: the store keeps weak references to live pages
class Page:
    """A page of an account's open orders, as `Orders.page` read them: their ids, where the next
    page starts, and their rows, which `load` reads instead of the database while current."""

    ids: list[str]
    after: int  # the position to continue from
    version: int  # SQLite's data_version when the rows were read
    owner: Owner
    rows: dict[_Key, tuple[int, Row]] = field(repr=False)  # key -> (rowid, row)


@dataclass(eq=False)
class Reading:
    """A page's read in flight: the drops when it began, and the orders `save` wrote since."""

    drops: tuple[int, int]
    written: list[Sequence[_Key]] = field(default_factory=list)


class LivePages:
    """The pages passes hold, the reads of pages in flight, and how often pages were dropped."""

    def __init__(self) -> None:
        # A page the pass lets go of leaves this set by itself.
        self._pages: weakref.WeakSet[Page] = weakref.WeakSet()
        self._drops: Counter[Owner | None] = Counter()  # None: every page's
        self._reading: set[Reading] = set()

    def reading(self, owner: Owner) -> Reading:
        """Note a page's read beginning, before it reads anything (`hold` or `done` ends it)."""
        read = Reading(self._mark(owner))
        self._reading.add(read)
        return read

    def done(self, read: Reading) -> None:
        """End a read (`hold` did, or it failed)."""
        self._reading.discard(read)

    def hold(self, page: Page, read: Reading) -> None:
        """Hold a page a pass read, to keep it current: its rows are dropped at once when its
        account's pages were dropped, or `save` wrote one of its orders, while they were read
        (the write may have come after the read: the page would bring the old row back)."""
        self.done(read)
        rows = page.rows
        if read.drops != self._mark(page.owner) or any(
            key in rows for keys in read.written for key in keys
        ):
            rows.clear()
        self._pages.add(page)

    def wrote(self, keys: Sequence[_Key]) -> None:
        """Note orders `save` wrote, for the pages being read (they are few: only while one
        is, and then a key's look-up each when it is held)."""
        for read in self._reading:
            read.written.append(keys)

    @property
    def in_flight(self) -> bool:
        return bool(self._reading)

    def current(self) -> list[Page]:
        """Return the pages whose rows are current."""
        return [p for p in self._pages if p.rows]

    def _mark(self, owner: Owner) -> tuple[int, int]:
        # What changes when pages of `owner` are dropped.
        return self._drops[None], self._drops[owner]

    def drop(self, owner: Owner | None = None) -> None:
        """Make the pages of `owner` (every page: None) stale, those being read too."""
        self._drops[owner] += 1
        drop(p for p in self._pages if owner is None or p.owner == owner)

    def drop_each(self, keys: Iterable[_Key]) -> None:
        """Make the pages of the orders' accounts stale (a write of them rolled back)."""
        for source, account in {(key[0], key[1]) for key in keys}:
            self.drop((source, account))


def drop(pages: Iterable[Page]) -> None:
    """Make pages stale: their next loads read the database."""
    for page in list(pages):
        page.rows.clear()
