"""`reconciler status` for people: aligned tables, coloured only on a terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol

from ..json_text import optional_iso_time as ts
from ..model import status_info
from ..terminal import columns, shown, width

if TYPE_CHECKING:
    # Types alone: `orders` and `events` show statuses in these words without loading the
    # report `status` gathers (the pollers', sinks' and writes' health it reads).
    from .status_report import AccountHealth, AccountStatus, Status

Colour = Literal["", "bold", "green", "yellow", "red"]
_SGR: Final[Mapping[Colour, str]] = {"bold": "1", "green": "32", "yellow": "33", "red": "31"}
_HEALTH: Final[Mapping[AccountHealth, Colour]] = {
    "ok": "green",
    "failing": "red",
    "unknown": "yellow",
    "not_configured": "red",  # its orders are followed and never checked
}


def _health_colour(account: AccountStatus) -> Colour:
    """An account no longer configured is red while it has open orders nothing checks or
    writes nothing settles; with every order ended and no such write nothing needs doing."""
    if (
        account.health == "not_configured"
        and not (account.uncertain_writes or account.queued_writes)
        and not any(
            status is None or not status_info(account.source, status).end_state
            for status, _ in account.orders
        )
    ):
        return ""
    return _HEALTH[account.health]


MAX_NAMED = 5  # references or order ids named per account; the rest are counted
NO_STATUS = "(no status yet)"  # the orders no answer gave a status yet


def status_word(word: str | None, placeholder: str = NO_STATUS) -> str:
    """A provider's status word as a table prints it (`status`'s ORDERS, `orders`, `events`),
    `placeholder` for none: one that could read as the placeholder, as a word so quoted, or as
    a change (`A -> B`, in `events`' CHANGE column), in double quotes (CCV may answer
    `(no status yet)`, `-`, or any text)."""
    if word is None:
        return placeholder
    quoted = word == placeholder or word.startswith(("(", '"')) or "->" in word
    return f'"{word}"' if quoted else word


class _Stream(Protocol):
    def isatty(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Cell:
    """A table cell and the colour it has on a terminal."""

    text: str
    colour: Colour = ""


def use_colour(stream: _Stream, env: Mapping[str, str]) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and not env.get("NO_COLOR")


def _when(n: int, colour: Colour) -> Cell:
    """A count, coloured when it is not 0 (something waits)."""
    return Cell(str(n), colour if n else "")


def _disabled(reason: str, since: float | None) -> str:
    """A disabled sink's cell: why, and since when (it stays so until `replay --sink`)."""
    return reason if since is None else f"{reason} since {ts(since)}"


def render_text(status: Status, *, colour: bool = False) -> str:
    """Return the status as aligned text; with `colour`, ANSI colours mark what needs a look."""
    accounts = [
        [
            f"{a.source}/{a.account}",
            Cell(a.health.replace("_", " "), _health_colour(a)),
            ts(a.failing_since) or "-",
            ts(a.last_success) or "-",
            str(a.followed),
            str(a.due),
            _when(a.stuck, "yellow"),
            _when(a.check_failed, "yellow"),
            Cell(a.last_error, "red") if a.last_error else "-",
        ]
        for a in status.accounts
    ]
    # A rest is no failure of the provider's: said apart, with when its reads go on. The
    # account's health stays its events' (failing once a pass met the rest), as in --json.
    resting: list[list[str | Cell]] = [
        [
            f"{a.source}/{a.account}",
            Cell(ts(a.resting_until) or "", "yellow"),
            "no read of it before then (its provider's Retry-After)",
        ]
        for a in status.accounts
        if a.resting_until is not None
    ]
    writes: list[list[str | Cell]] = [
        [
            f"{a.source}/{a.account}",
            _when(a.uncertain_writes, "red"),
            str(len(a.sending_of)),
            _when(a.queued_writes, "yellow"),
            _to_do(a),
        ]
        for a in status.accounts
        if a.uncertain_writes or a.sending_of or a.queued_writes
    ]
    orders = [
        [f"{a.source}/{a.account}", status_word(s), str(n)]
        for a in status.accounts
        for s, n in a.orders
    ]
    sinks = [
        [
            s.name if s.configured else Cell(f"{s.name} (not configured)", "yellow"),
            _when(s.backlog, "yellow"),
            _when(s.dead, "red"),
            Cell(_disabled(s.disabled, s.disabled_since), "red") if s.disabled else "-",
        ]
        for s in status.sinks
    ]
    store = status.store
    failure = store.last_failure
    p = status.last_pass
    last: list[list[str | Cell]] = [["name", "none finished yet"]]
    if p is not None:
        last = [
            ["name", p.name],
            ["started", ts(p.started) or "-"],
            ["seconds", f"{p.seconds:.3f}"],
            ["outcome", Cell(p.outcome, "green" if p.outcome == "ok" else "red")],
            ["checked", f"{p.checked} ({p.failed} failed), {p.events} events"],
            ["failing", ", ".join(p.failing) or "-"],
        ]
    tables = [
        _table(
            [
                "ACCOUNT",
                "HEALTH",
                "FAILING SINCE",
                "LAST SUCCESS",
                "FOLLOWED",
                "DUE",
                "STUCK",
                "CHECK FAILED",
                "ERROR",
            ],
            accounts,
            colour,
        ),
        *([_table(["RESTING", "UNTIL", ""], resting, colour)] if resting else []),
        *(
            [_table(["WRITES", "UNCERTAIN", "SENDING", "QUEUED", "TO DO"], writes, colour)]
            if writes
            else []
        ),
        _table(["ACCOUNT", "STATUS", "ORDERS"], orders, colour),
        _table(["SINK", "BACKLOG", "DEAD", "DISABLED"], sinks, colour),
        _table(["LAST PASS", ""], last, colour),
        _table(
            ["STORE", ""],
            [
                ["path", str(store.path) + ("" if store.exists else " (not created yet)")],
                ["size", _bytes(store.size_bytes)],
                ["free", "-" if store.free_bytes is None else _bytes(store.free_bytes)],
                [
                    "last failure",
                    "none recorded"
                    if failure is None
                    else f"{ts(failure.since)} to {ts(failure.until)}: {failure.error}",
                ],
            ],
            colour,
        ),
    ]
    return "\n\n".join("\n".join(t) for t in tables)


def _named(ids: tuple[str, ...]) -> str:
    named = ", ".join(ids[:MAX_NAMED])
    if len(ids) > MAX_NAMED:
        named += f" and {len(ids) - MAX_NAMED} more"
    return named


def _to_do(a: AccountStatus) -> str:
    """What settles an account's unsettled writes: a person's word for the uncertain ones (a
    crash or a cut-off stop leaves them, and nothing else says so), nothing for those being
    sent, and for the queued a writer that names their account."""
    todo: list[str] = []
    account = a.account_option
    if a.uncertain_writes:
        named = _named(a.uncertain_of)
        if a.source == "ccv":
            todo.append(
                f"find each order at CCV by its reference ({named}), then "
                f"`reconciler track ccv ID --ref REF{account}`; one CCV does not have: "
                f"`reconciler ccv resolve --ref REF --not-sent{account}` (refused, saying why, "
                "where CCV's answer or a notification said it made the order); one CCV named "
                "under an id reconciler cannot use (`unusable_order_id`): "
                f"`reconciler ccv resolve --ref REF --made{account}`"
            )
        else:
            todo.append(
                f"look each order up in CCNow's backroom ({named}), then "
                f"`reconciler ccnow resolve ID --sent|--not-sent{account}` (with `--action "
                "ACTION` for an order with uncertain actions of several kinds)"
            )
    if a.sending_of:
        provider = "CCV" if a.source == "ccv" else "CCNow"
        todo.append(
            f"being sent ({_named(a.sending_of)}): the running reconciler records {provider}'s "
            "answer"
        )
    if a.queued_writes and a.configured:
        todo.append("queued: the daemon sends them (or the next `reconciler ccnow` command)")
        if a.queued_next_at is not None:  # none due yet: a rate limit's Retry-After, say
            todo[-1] += f", none before {ts(a.queued_next_at)}"
    elif a.queued_writes:
        # ActionSender sends only the accounts of its config: nothing else ever will.
        todo.append(
            "queued, and sent by nothing while the config does not name the account: name it "
            "again, with its credentials, until they are sent"
        )
    return "; ".join(todo)


def _table(head: Sequence[str], rows: Sequence[Sequence[str | Cell]], colour: bool) -> list[str]:
    # Statuses and errors are the providers' text, kept as it came.
    table = [
        [Cell(h, "bold") for h in head],
        *(
            [Cell(shown(c.text), c.colour) if isinstance(c, Cell) else Cell(shown(c)) for c in row]
            for row in rows
        ),
    ]
    # In terminal cells, not characters: a CJK status or an emoji takes two.
    widths = columns([c.text for c in row] for row in table)
    return [
        "  ".join(_cell(c, w, colour) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]


def _cell(cell: Cell, cells: int, colour: bool) -> str:
    pad = " " * (cells - width(cell.text))
    # Padding stays outside the colour codes, so columns line up as without colour.
    if colour and cell.colour and cell.text:
        return f"\x1b[{_SGR[cell.colour]}m{cell.text}\x1b[0m{pad}"
    return cell.text + pad


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"
