"""Debounce notification hints per key, so that a burst of triggers costs one or two checks.

The first trigger calls at once; later ones, while a call runs or within the cooldown after it,
become one trailing call, so a second change is not lost. Bounded in keys and in call time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Literal

from ..logs import fields

# The receiver's logger: these lines have always been the receiver's.
log = logging.getLogger("reconciler.server")

MAX_KEYS = 10_000  # debounce slots (orders, references, accounts) remembered at once
CALL_TIMEOUT_S = 300.0  # a hub call that hangs must not block its key for ever

Trigger = Literal["scheduled", "coalesced", "refused"]


@dataclass(slots=True)
class _Slot:
    """Debounce state of one key."""

    pending: Callable[[float], Awaitable[None]] | None = None
    since: float = 0.0  # earliest arrival among the triggers merged into `pending`
    task: asyncio.Task[None] | None = None
    finished_at: float | None = None  # loop time when the last call ended


class Debouncer:
    """Coalesce triggers per key: the first calls at once, later ones (while a call runs or
    within `cooldown_s` after it) become one trailing call, so a second change is not lost."""

    def __init__(
        self,
        cooldown_s: float,
        *,
        max_keys: int = MAX_KEYS,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.cooldown_s = cooldown_s
        self.max_keys = max_keys
        self.call_timeout_s = call_timeout_s
        self._slots: OrderedDict[Hashable, _Slot] = OrderedDict()
        self._closed = False

    def __len__(self) -> int:
        return len(self._slots)

    def _tasks(self) -> list[asyncio.Task[None]]:
        return [slot.task for slot in self._slots.values() if slot.task is not None]

    def _busy_keys(self) -> list[Hashable]:
        return [key for key, slot in self._slots.items() if slot.task is not None]

    def trigger(
        self, key: Hashable, call: Callable[[float], Awaitable[None]], received_at: float
    ) -> Trigger:
        """Ask for `call(received_at)`; say whether it was scheduled, merged or refused."""
        if self._closed:
            return "refused"
        slot = self._slots.get(key)
        if slot is None:
            if not self._make_room():
                return "refused"
            slot = self._slots[key] = _Slot()
        else:
            self._slots.move_to_end(key)
        outcome: Trigger = "scheduled"
        if slot.pending is None:
            slot.since = received_at
        else:
            outcome = "coalesced"
            slot.since = min(slot.since, received_at)
        slot.pending = call
        if slot.task is None:
            slot.task = asyncio.get_running_loop().create_task(self._run(key, slot))
        return outcome

    def _make_room(self) -> bool:
        """Drop least recently triggered idle keys until one more fits."""
        if len(self._slots) < self.max_keys:
            return True
        idle = [key for key, slot in self._slots.items() if slot.task is None]
        for key in idle[: len(self._slots) - self.max_keys + 1]:
            del self._slots[key]
        return len(self._slots) < self.max_keys

    async def _run(self, key: Hashable, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        try:
            while slot.pending is not None:
                if slot.finished_at is not None:
                    wait = slot.finished_at + self.cooldown_s - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                # Read after the cooldown: triggers during it replaced `pending` and `since`.
                call, since = slot.pending, slot.since
                slot.pending = None
                try:
                    await asyncio.wait_for(call(since), self.call_timeout_s)
                except asyncio.TimeoutError:
                    log.error("notification.check_timeout", extra=fields(key=repr(key)))
                except Exception:
                    # The hub turns provider failures into state itself; this is a bug.
                    log.error("notification.check_failed", exc_info=True)
                slot.finished_at = loop.time()
        finally:
            slot.task = None

    async def join(self) -> None:
        """Wait until no call is running or waiting."""
        while tasks := self._tasks():
            # `wait`, not `gather`: a caller's timeout cancels this wait, never the calls.
            await asyncio.wait(tasks)

    @property
    def refusing(self) -> bool:
        """Whether `refuse` (or `close`) was called: every trigger is refused."""
        return self._closed

    def refuse(self) -> None:
        """Refuse new triggers from now on; calls already asked for go on."""
        self._closed = True

    async def close(self, grace_s: float = 0.0) -> list[Hashable]:
        """Refuse new triggers; let running and waiting calls end within `grace_s`, then cancel
        the rest and wait for them to end; return the keys whose calls were cancelled.

        A call cut short is a notification checked by the next poll instead: CCV calls once
        and never again, so one about to finish is worth the short wait."""
        self.refuse()
        if grace_s > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.join(), grace_s)
        keys, tasks = self._busy_keys(), self._tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return keys
