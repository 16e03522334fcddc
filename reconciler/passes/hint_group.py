"""Notifications' observations that wait for the writer together go in one transaction.

Each notification's check used to commit its own transaction, and a burst of them queued one
after another for the writer, each transaction taking its few event-loop turns in turn (while a
catch-up keeps the loop busy, tens of milliseconds each). The first one to wait leads a group;
those that arrive while it waits for the writer join it, and its transaction writes them all.
Orders of a group are distinct, so every order's events keep their order; a member whose
group's transaction failed writes its own, as it would have alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..events import Event
from ..model import Observation, OrderKey
from .report import PassReport

MAX_MEMBERS = 50  # notifications per transaction, at most


class Member:
    """One notification's observations, and what its group's transaction wrote for them."""

    def __init__(
        self, observations: list[Observation], report: PassReport | None, discover: bool
    ) -> None:
        self.observations = observations
        self.report = report
        self.discover = discover
        self.keys = frozenset(o.key for o in observations)
        # Its event count once written; None: the transaction failed, it writes its own.
        self.written: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()


class Group:
    """Members written in one transaction, led by the first (who writes it)."""

    def __init__(self, leader: Member) -> None:
        self.members = [leader]
        self.keys = set(leader.keys)
        self.discover = leader.discover

    def take(self, member: Member) -> bool:
        """Add a member unless it names an order already in the group (or the group is full)."""
        if (
            member.discover != self.discover
            or len(self.members) >= MAX_MEMBERS
            or not self.keys.isdisjoint(member.keys)
        ):
            return False
        self.members.append(member)
        self.keys |= member.keys
        return True

    @staticmethod
    def count(member: Member, events: Sequence[Event]) -> int:
        """Return how many of the events are of the member's orders."""
        keys = member.keys
        return sum(
            1
            for e in events
            if e.order_id is not None and OrderKey(e.source, e.account, e.order_id) in keys
        )

    def done(self, events: Sequence[Event]) -> None:
        """The transaction committed: tell every member that waits how many events are its."""
        for member in self.members[1:]:
            if not member.written.done():
                member.written.set_result(self.count(member, events))

    def failed(self) -> None:
        """The transaction failed: every member that waits writes its own."""
        for member in self.members[1:]:
            if not member.written.done():
                member.written.set_result(None)
