"""Status words used as config keys: a word the provider does not document is kept (providers add
new ones), but a documented word in the wrong case or misspelt would match no order in silence."""

from __future__ import annotations

from ..model import Source, known_statuses, status_info

# Slips (a letter wrong, missing, extra, or two swapped: "pendng", "Proccessing") a word of at
# least so many letters may hold and still be a documented word misspelt: one from 5 letters,
# two from 10 ("AwaitngPaymnt"). A shorter word ("New2") or one further off ("AwaitingShipment",
# "ErpProcessing") may be a status the provider added, and is kept as it is.
_SLIPS_FROM_LENGTH = ((10, 2), (5, 1))
_NEVER_STUCK = "an order in an end state is never stuck"
_NEVER_CHECKED = "an order in an end state is not checked again"
_SETTLED = "settled orders are checked every `settled_interval` for `watch_settled`"


def status_key_problem(source: Source, word: str, *, stuck: bool = False) -> str | None:
    """Why `word` cannot be a status key of `source` (under `stuck_after` when `stuck`, else
    under `status_intervals`), or None. An end state is neither stuck nor checked again; a
    settled status follows `settled_interval` and `watch_settled`, never `status_intervals`,
    and may be stuck (CCV `Failed` waits for a CCV employee: an alert after days says none
    acted)."""
    if not word or not word.isprintable() or word != word.strip():
        # A provider's status word is never empty nor padded: such a key would match no order.
        return "not a status word (empty, blanks around it, or a control character)"
    never = _NEVER_STUCK if stuck else _NEVER_CHECKED
    known = known_statuses(source)
    if word in known:
        if status_info(source, word).end_state:
            return f"'{word}' is an end state: {never}"
        if not stuck and status_info(source, word).settled:
            return f"'{word}' is settled: {_SETTLED}"
        return None
    # Compared without case, so that "awaitingpaymnt" still finds AwaitingPayment.
    folded = word.casefold()
    slips = next((n for length, n in _SLIPS_FROM_LENGTH if len(folded) >= length), 0)
    close = [status for status in known if _slips(status.casefold(), folded) <= slips]
    if not close:
        return None
    meant = min(close)
    problem = (
        f"did you mean '{meant}'? status words are case-sensitive"
        if meant.casefold() == word.casefold()
        else f"did you mean '{meant}'? (a word {source} documents, spelt otherwise)"
    )
    if status_info(source, meant).end_state:
        problem += f"; '{meant}' is an end state: {never}"
    elif not stuck and status_info(source, meant).settled:
        problem += f"; '{meant}' is settled: {_SETTLED}"
    return problem


def _slips(a: str, b: str) -> int:
    """Return how many slips make `b` of `a`: letters wrong, missing or extra, or two
    neighbours swapped (the optimal string alignment distance)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]
