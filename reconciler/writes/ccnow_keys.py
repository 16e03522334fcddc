"""CCNow order actions' idempotency keys: the forms one order's command may be kept under
(pure). `K` given for an order alone and for it among others (`K/ORDER`) name one command."""

from __future__ import annotations

from itertools import product

from reconciler.model import ccnow_id
from reconciler.store import commands as cmds


def key_forms(c: cmds.NewCommand) -> list[str]:
    """Return the keys one order's command may have been made under, its own first: a key `K`
    given for that order alone is kept as `K`, given for several orders as `K/ORDER`; each
    names the same command. So a key `K` is also `K/ORDER` and, when it ends in `/ORDER`
    (given for several orders, or so given alone), `K` without it; the order part in any of
    the spellings an order id is taken in (`K/396101142` is `K/396-10-1142`)."""
    head, own = peeled(c.key, c.order_id)
    counts = dict.fromkeys((own, own + 1, *((own - 1,) if own else ())))
    forms = [c.key]
    for n in counts:
        for parts in product(_spellings(c.order_id), repeat=n):
            forms.append(head + "".join(f"/{p}" for p in parts))
    return list(dict.fromkeys(forms))


def _spellings(order_id: str) -> tuple[str, ...]:
    """The ways an order id (`NNN-NN-NNNN`) is written that name it (hyphens optional)."""
    a, b, c = order_id.split("-")
    return (f"{a}-{b}-{c}", f"{a}{b}{c}", f"{a}{b}-{c}", f"{a}-{b}{c}")


def peeled(key: str, order_id: str) -> tuple[str, int]:
    """Return a key without the `/ORDER` parts naming its own order it ends in (two at most:
    `K/ORDER` given for several orders is `K/ORDER/ORDER`), and how many there were."""
    head, own = key, 0
    while own < 2:
        rest, slash, tail = head.rpartition("/")
        if not slash or ccnow_id(tail) != order_id:
            break
        head, own = rest, own + 1
    return head, own


def own_suffix(key: str, order_id: str) -> str:
    """Return a key whose last `/ORDER` part names its own order with that part as order ids
    are kept (`K/396101142` -> `K/396-10-1142`), any other key as it is."""
    _head, own = peeled(key, order_id)
    return key if own == 0 else key.rpartition("/")[0] + f"/{order_id}"
