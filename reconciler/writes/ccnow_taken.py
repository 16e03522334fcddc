"""What a run of CCNow order actions did: its tally (the summary line), and its commands as
the API and the command line show them."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.store import commands as cmds


@dataclass
class Tally:
    """What one run did: commands posted, and how those it touched ended."""

    sent: int = 0
    done: int = 0
    refused: int = 0
    uncertain: int = 0
    queued: int = 0

    def line(self) -> str:
        """Return the summary line of a run."""
        return (
            f"sent {self.sent}, done {self.done}, refused {self.refused}, "
            f"uncertain {self.uncertain}, queued {self.queued}"
        )

    def count(self, state: str) -> None:
        """Count one command by the state it is in after the run."""
        if state in ("succeeded", "sent"):
            self.done += 1
        elif state in ("refused", "not_sent"):
            self.refused += 1
        elif state == "uncertain":
            self.uncertain += 1
        else:
            self.queued += 1


@dataclass(frozen=True)
class Taken:
    """What became of the commands of one request."""

    rows: list[cmds.Command]
    earlier: set[int]  # ids of commands their key had made before
    # Refused here and not recorded: a discount waiting for an uncertain one to be settled.
    refused: list[tuple[cmds.NewCommand, str]]
    sent: int

    def tally(self) -> Tally:
        """Count the request's commands by where they ended."""
        tally = Tally(sent=self.sent, refused=len(self.refused))
        for c in self.rows:
            tally.count(c.state)
        return tally

    def to_json(self) -> list[dict[str, object]]:
        """One object per order; a discount that waits for an uncertain one has `id` null."""
        out = [command_json(c, earlier=c.id in self.earlier) for c in self.rows]
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
            }
            for c, why in self.refused
        ]
        return out


# A command's state in DESIGN.md's words, as the API shows it (`state`): `sent` is a post on
# its way (the command line's summary counts it with the queued ones). `outcome` keeps the
# command's own word (a `sent` or `not_sent` there is a person's `ccnow resolve`).
API_STATE: dict[str, str] = {
    "queued": "queued",
    "sending": "sent",
    "succeeded": "done",
    "sent": "done",
    "refused": "refused",
    "not_sent": "refused",
    "uncertain": "uncertain",
}


def command_json(c: cmds.Command, *, earlier: bool = False) -> dict[str, object]:
    """Return a command as the API shows it."""
    return {
        "id": c.id,
        "account": c.account,
        "order_id": c.order_id,
        "action": c.action,
        "key": c.key,
        "state": API_STATE[c.state],
        "outcome": c.state,
        "answer": c.answer,
        "attempts": c.attempts,
        "notes": c.notes,
        "amount": c.amount,
        "trackname": c.trackname,
        "tracknumber": c.tracknumber,
        "made_before": earlier,
    }
