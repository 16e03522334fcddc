"""Keys matched ignoring case, as the widest reader of a JSON body may match them.

A key differing only in case from one reconciler sets or checks is refused (a submit's
`notificationUrl`, a pricing body's `shippingCost`), since CCV's JSON reader may ignore case and
read the caller's. Two readers disagree: str.casefold() (Unicode's full folding: `ß` is `ss`,
`ſ` is `s`) and Java's String.equalsIgnoreCase, which takes two characters as one where their
upper cases are equal, or the lower cases of those (`ı` and `İ` are `i` for it, which
casefold() keeps apart). `fold` is as wide as both, so that neither can see a key the other
missed.
"""

from __future__ import annotations

import re

# `İ` folds to `i` and a combining dot above; Java's rule takes it for `i` itself (its lower
# case): an `i` followed by dots above is folded as the `i` alone.
_DOTTED_I = re.compile("i\u0307+")


def fold(key: str) -> str:
    """Return `key` folded: two keys equal ignoring case for casefold() or for Java's
    equalsIgnoreCase fold the same (`ı`, `İ`, `I` and `i` alike; `ſ` and `s`; the Kelvin sign
    and `k`; `ß` and `ss`)."""
    if key.isascii():  # every CCV answer's keys: both readers lower ASCII alike
        return key.lower()
    # casefold first (so equal for casefold stays equal), then upper and casefold again (so
    # characters with one upper case, as `ı` and `i`, meet).
    return _DOTTED_I.sub("i", key.casefold().upper().casefold())
