"""The pages of orders that passes hold (`Orders.page`): each holds rows of one account, so a
write outside the passes that changed some rows of one account makes only that account's pages
stale; a CCV catch-up goes on reading its own page while a CCNow hint's write lands."""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterable
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


class LivePages:
    """The pages passes hold, and how often pages were dropped: a page read while its rows
    were dropped is stale from the start (`mark`)."""

    def __init__(self) -> None:
        # A page the pass lets go of leaves this set by itself.
        self._pages: weakref.WeakSet[Page] = weakref.WeakSet()
        self._drops: Counter[Owner | None] = Counter()  # None: every page's

    def add(self, page: Page) -> None:
        """Hold a page a pass read, to keep it current."""
        self._pages.add(page)

    def current(self) -> list[Page]:
        """Return the pages whose rows are current."""
        return [p for p in self._pages if p.rows]

    def mark(self, owner: Owner) -> tuple[int, int]:
        """Return what changes when pages of `owner` are dropped: read before and after a
        page's rows, a change means they may be stale."""
        return self._drops[None], self._drops[owner]

    def drop(self, owner: Owner | None = None) -> None:
        """Make the pages of `owner` (every page: None) stale."""
        self._drops[owner] += 1
        drop(p for p in self._pages if owner is None or p.owner == owner)


def drop(pages: Iterable[Page]) -> None:
    """Make pages stale: their next loads read the database."""
    for page in list(pages):
        page.rows.clear()
