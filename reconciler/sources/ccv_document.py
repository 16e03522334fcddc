"""A CCV status answer read: its orderStatus word and externalReference value, or none."""

from __future__ import annotations

import json

from reconciler.strict_json import loads_answer

from ..key_fold import fold

MAX_STATUS_LENGTH = 64


def _status_of(value: str) -> str | None:
    """Return the orderStatus word as kept (verbatim, but for blanks around it), or None when
    a log line and a database cannot hold it (`"Completed\\n"`: no end state CCV meant)."""
    word = value.strip(BLANKS)
    return word if 0 < len(word) <= MAX_STATUS_LENGTH and word.isprintable() else None


def status_document(body: bytes) -> tuple[str | None, object] | None:
    """Return the orderStatus word (None: text a log and a database cannot hold) and the
    externalReference value of a status answer, or None when the body is not one (not JSON,
    not an object whose orderStatus is text: a `null` or a number is what a gateway may send
    on every path; or one of those two keys named twice at its top level:
    `{"orderStatus": "New", "orderStatus": "Completed"}` is two answers, and taking the last
    would guess an end state that is never asked again). The two keys are read ignoring
    case, as CCV's answer to a submit is (a .NET service writes `OrderStatus`), so two keys
    differing only in case (`orderStatus` and `OrderStatus`) are one named twice. Any other
    key named twice, nested or not, is CCV's business: the last one holds, as Python reads
    JSON, escapes or not."""
    try:
        # Decoded as json.loads decodes bytes (UTF-8, -16 or -32, told by the first bytes),
        # once: the keys are then looked for in the text, whatever the encoding.
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        # The usual answer is decoded by the C decoder alone; one that may name a key twice
        # (one of ours written twice, in any case, or any spelled with escapes or other than
        # ASCII) once, with a hook that finds out.
        pairs = _Pairs() if _may_repeat_a_key(text) else None
        # `NaN` and `Infinity` are not JSON: no answer CCV means holds them.
        document = loads_answer(text, pairs, constants=False)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or (pairs is not None and pairs.repeated):
        return None
    answer = _answer_keys(document)
    if answer is None:
        return None
    value = answer.get(_STATUS)
    if not isinstance(value, str):
        return None
    return _status_of(value), answer.get(_REFERENCE)


def _answer_keys(document: dict[str, object]) -> dict[str, object] | None:
    """Return the values of the two keys of an answer, by their folded names, or None when
    two of its keys differ only in case: which one CCV meant is not known."""
    found: dict[str, object] = {}
    for key, value in document.items():
        folded = fold(key)
        if folded in _ANSWER_KEYS:
            if folded in found:
                return None
            found[folded] = value
    return found


def _may_repeat_a_key(text: str) -> bool:
    """Whether a status answer's text may name one of its two keys twice: written twice (in
    any case), or a key written with escapes (`"order\\u0053tatus"`) or in letters other than
    ASCII (`ſ` folds to `s`). Plain ASCII text spells its keys as written, whatever the
    encoding of the bytes, and its case folds as lower() does."""
    if "\\u" in text or not text.isascii():
        return True
    lowered = text.lower()
    return lowered.count('"orderstatus"') > 1 or lowered.count('"externalreference"') > 1


# Blanks: tab and Unicode's spaces (Zs), those str.strip() drops that are no control character.
BLANKS = "\t \xa0\u1680\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B)))

# The answer's two keys, as `fold` leaves them: matched ignoring case.
_STATUS = "orderstatus"
_REFERENCE = "externalreference"
_ANSWER_KEYS = frozenset({_STATUS, _REFERENCE})


class _Pairs:
    """An object_pairs_hook that notes whether the object it made last names orderStatus or
    externalReference twice, in any case: the decoder makes the top level's last, once what it
    holds is made, so a repeat in a nested object is no repeat of the answer's."""

    __slots__ = ("repeated",)

    def __init__(self) -> None:
        self.repeated = False

    def __call__(self, items: list[tuple[str, object]]) -> dict[str, object]:
        named = [folded for key, _ in items if (folded := fold(key)) in _ANSWER_KEYS]
        self.repeated = len(named) > len(set(named))
        return dict(items)
