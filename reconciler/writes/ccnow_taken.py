"""What a run of CCNow order actions did: its tally (the summary line), and its commands as
the API and the command line show them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from reconciler.json_text import iso_time
from reconciler.store import commands as cmds
from reconciler.terminal import shown

ON_ITS_WAY = "on its way, no answer yet"  # a command another request's post carries
# A ship or cancel CCNow answered as taken that a query read since says it did not take.
UNCONFIRMED = (
    "a query since reads the order before it: it may not have taken (order.action_unconfirmed);"
    " run it again with a new --key if it should"
)


# What does a command a run leaves queued, sending or uncertain (`Tally.left_to_do`).
_WAYS = (
    "the running daemon or the next `reconciler ccnow` line sends a queued one",
    "a sending one is on its way in another post, its answer recorded by that process",
    "`reconciler ccnow resolve ID --sent|--not-sent` settles an uncertain one",
)


@dataclass
class Tally:
    """What one run did: commands posted, and how those it touched ended."""

    sent: int = 0
    done: int = 0
    refused: int = 0
    uncertain: int = 0
    queued: int = 0
    sending: int = 0  # on their way (another request's post): no answer yet
    posted: set[int] = field(default_factory=set)  # the ids of the commands `sent` counts
    # The ids of ships and cancels their close answered as taken and, in the same write, said
    # may not have (a query since said the order before them: `order.action_unconfirmed`).
    unconfirmed: set[int] = field(default_factory=set)

    def post(self, batch: Iterable[cmds.Command]) -> None:
        """Count a batch's commands as sent: their post left."""
        ids = [c.id for c in batch]
        self.sent += len(ids)
        self.posted.update(ids)

    def line(self) -> str:
        """Return the summary line of a run."""
        line = (
            f"sent {self.sent}, done {self.done}, refused {self.refused}, "
            f"uncertain {self.uncertain}, queued {self.queued}"
        )
        return f"{line}, sending {self.sending}" if self.sending else line

    def left_to_do(self) -> str:
        """What the run leaves to do (queued, sending, uncertain) and what does it, or ``: said
        where a refused one's 65 would hide it."""
        counts = (("queued", self.queued), ("sending", self.sending), ("uncertain", self.uncertain))
        total = sum(n for _, n in counts)
        if not total:
            return ""
        said = ", ".join(f"{word} {n}" for word, n in counts if n)
        ways = [way for way, (_, n) in zip(_WAYS, counts, strict=True) if n]
        return f"{total} command{'s' if total > 1 else ''} still to do ({said}): {'; '.join(ways)}"

    def count(self, state: str) -> None:
        """Count one command by the state it is in after the run."""
        if state in ("succeeded", "sent"):
            self.done += 1
        elif state in ("refused", "not_sent"):
            self.refused += 1
        elif state == "uncertain":
            self.uncertain += 1
        elif state == "sending":
            # Its line says `sending`: the summary says it too, not `queued`.
            self.sending += 1
        else:
            self.queued += 1


@dataclass(frozen=True)
class Taken:
    """What became of the commands of one request."""

    rows: list[cmds.Command]
    earlier: set[int]  # ids of commands their key had made before
    # Refused here and not recorded: a discount while an earlier one of its order is open
    # (queued, being sent, uncertain).
    refused: list[tuple[cmds.NewCommand, str]]
    sent: int  # how many of the request's commands were posted
    # Queued ones held back, each by the older command of its order ahead of it.
    held: dict[int, cmds.Command]
    # Whether the daemon's stop cut a post of them off before CCNow answered (in_flight.Cut):
    # `rows` are where they stand then (that post's `sending`), and the caller is told so.
    cut: bool = False
    # Ids of those done whose close raised `order.action_unconfirmed` (Tally.unconfirmed).
    unconfirmed: frozenset[int] = frozenset()

    def to_json(self) -> list[dict[str, object]]:
        """One object per order; a refused discount (not recorded) has `id` null; a command
        held back names the one it waits for; `unconfirmed`: true for one done that a query
        read since says may not have taken (its close raised `order.action_unconfirmed`)."""
        out = [
            {
                **command_json(c, earlier=c.id in self.earlier),
                "unconfirmed": c.id in self.unconfirmed,
            }
            for c in self.rows
        ]
        for o in out:
            if (ahead := self.held.get(int(str(o["id"])))) is not None:
                waits = f"waits for #{ahead.id} ({ahead.action}) of its order"
                o["answer"] = waits if o["answer"] is None else f"{o['answer']}; {waits}"
        out += [
            {
                "id": None,
                "account": c.account,
                "order_id": c.order_id,
                "action": c.action,
                "state": "refused",
                "outcome": "refused",
                "answer": why,
                "sent": False,
                "unconfirmed": False,
            }
            for c, why in self.refused
        ]
        return out


# A command's state in DESIGN.md's words, as the API shows it (`state`): `sent` is a post on
# its way (`sending`, the command line's word in its line and its summary). `outcome` keeps the
# command's own word (a `sent` or `not_sent` there is a person's `ccnow resolve`).
API_STATE: Final[Mapping[str, str]] = {
    "queued": "queued",
    "sending": "sent",
    "succeeded": "done",
    "sent": "done",
    "refused": "refused",
    "not_sent": "refused",
    "uncertain": "uncertain",
}


def command_json(
    c: cmds.Command, *, earlier: bool = False, now: float | None = None
) -> dict[str, object]:
    """Return a command as the API shows it; `now` (default: the clock's) decides whether a
    queued command is due, its `next_attempt_at` then null, as status's `queued_next_at`."""
    now = time.time() if now is None else now
    return {
        "id": c.id,
        "account": c.account,
        "order_id": c.order_id,
        "action": c.action,
        "key": c.key,
        "state": API_STATE[c.state],
        "outcome": c.state,
        # Being sent: no answer yet (an earlier attempt's words are not this post's answer).
        "answer": None if c.state == "sending" else c.answer,
        "attempts": c.attempts,
        # When a queued command is posted next (a turned-away post's Retry-After may put it an
        # hour off); None: due at once (its time come, however long ago), or not queued.
        "next_attempt_at": iso_time(c.next_attempt_at)
        if c.state == "queued" and c.next_attempt_at > now
        else None,
        "notes": c.notes,
        "amount": c.amount,
        "trackname": c.trackname,
        "tracknumber": c.tracknumber,
        "made_before": earlier,
    }


def answer_word(state: str, answer: str | None) -> str:
    """CCNow's answer to a command, as it came (`shown`); `-` for none, but a command being
    sent, which a post under way carries (the dry run says it as the real run does)."""
    if answer:
        return shown(answer)
    return ON_ITS_WAY if state == "sending" else "-"
