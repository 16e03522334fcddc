"""What a CCNow coordinator's reads of its account's pending list said (poller/ccnow.py)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field


@dataclass
class ListMemory:
    """What this process's reads of an account's pending list said: the orders the last read
    named, and those that left it since (a read named them, a later one did not) whose query
    has not answered yet. A new process knows none: its start-up catch-up asks every order."""

    named: frozenset[str] | None = None  # None: the list was not read yet
    left: set[str] = field(default_factory=set)
    # A catch-up got no answer to the list or to its queries: the first pass whose queries
    # answer asks every open order the list does not name, as the catch-up meant to.
    ask_all: bool = False

    def read(self, named: Collection[str]) -> None:
        """Note a read of the list: what the read before named and this one does not left it,
        whatever the status word it was listed with."""
        now = frozenset(named)
        if self.named is not None:
            self.left |= self.named - now
        self.left -= now
        self.named = now

    def take(self) -> set[str]:
        """Return the orders that left the list, to be queried now, and forget them."""
        taken, self.left = self.left, set()
        return taken

    def queried(self, taken: Iterable[str], answered: Collection[str]) -> None:
        """Note a pass's queries: an order that answered, even with its own failure, has its
        own rhythm from now on; one `taken` that got no answer (the account failed) waits for
        the next pass that queries."""
        self.left -= set(answered)
        named = self.named or frozenset()
        self.left.update(i for i in taken if i not in answered and i not in named)
