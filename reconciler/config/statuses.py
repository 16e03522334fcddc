"""Status words used as config keys: a word the provider does not document is kept (providers add
new ones), but a documented word in the wrong case or misspelt would match no order in silence."""

from __future__ import annotations

from ..model import Source, known_statuses, status_info

# A slip of one letter (wrong, missing, extra, or two swapped: "pendng", "Proccessing") in a
# word of at least this many letters; a shorter word ("New2") or one further off
# ("AwaitingShipment") may be a status the provider added, and is kept as it is.
_SLIP_MIN_LENGTH = 5
_NEVER_STUCK = "an order in an end state is never stuck"


def status_key_problem(source: Source, word: str, *, stuck: bool = False) -> str | None:
    """Why `word` cannot be a status key of `source` (under `stuck_after` when `stuck`), or None."""
    known = known_statuses(source)
    if word in known:
        if stuck and status_info(source, word).end_state:
            return f"'{word}' is an end state: {_NEVER_STUCK}"
        return None
    # Compared without case, so that "awaitingpaymnt" still finds AwaitingPayment.
    folded = word.casefold()
    close = [
        status
        for status in known
        if status.casefold() == folded
        or (len(folded) >= _SLIP_MIN_LENGTH and _one_slip(status.casefold(), folded))
    ]
    if not close:
        return None
    meant = min(close)
    problem = (
        f"did you mean '{meant}'? status words are case-sensitive"
        if meant.casefold() == word.casefold()
        else f"did you mean '{meant}'? (a word {source} documents, spelt otherwise)"
    )
    if stuck and status_info(source, meant).end_state:
        problem += f"; '{meant}' is an end state: {_NEVER_STUCK}"
    return problem


def _one_slip(a: str, b: str) -> bool:
    """Whether `b` is `a` with one letter wrong, missing, extra, or two neighbours swapped."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        wrong = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(wrong) == 1:
            return True
        i = wrong[0]
        return len(wrong) == 2 and wrong[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((n for n, (x, y) in enumerate(zip(short, long, strict=False)) if x != y), len(short))
    return short[i:] == long[i + 1 :]
