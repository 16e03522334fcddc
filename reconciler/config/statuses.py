"""Status words used as config keys: a word the provider does not document is kept (providers add
new ones), but a documented word in the wrong case or misspelt would match no order in silence."""

from __future__ import annotations

import difflib

from ..model import Source, known_statuses, status_info

# About one wrong, missing or extra letter in a status word of ten ("pendng", "Proccessing").
_CLOSE = 0.8
_NEVER_STUCK = "an order in an end state is never stuck"


def status_key_problem(source: Source, word: str, *, stuck: bool = False) -> str | None:
    """Why `word` cannot be a status key of `source` (under `stuck_after` when `stuck`), or None."""
    known = known_statuses(source)
    if word in known:
        if stuck and status_info(source, word).end_state:
            return f"'{word}' is an end state: {_NEVER_STUCK}"
        return None
    # Compared without case, so that "awaitingpaymnt" still finds AwaitingPayment.
    by_fold = {status.casefold(): status for status in known}
    close = difflib.get_close_matches(word.casefold(), list(by_fold), n=1, cutoff=_CLOSE)
    if not close:
        return None
    meant = by_fold[close[0]]
    problem = (
        f"did you mean '{meant}'? status words are case-sensitive"
        if meant.casefold() == word.casefold()
        else f"did you mean '{meant}'? (a word {source} documents, spelt otherwise)"
    )
    if stuck and status_info(source, meant).end_state:
        problem += f"; '{meant}' is an end state: {_NEVER_STUCK}"
    return problem
