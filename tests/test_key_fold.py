"""One fold for the keys matched ignoring case: at least as wide as str.casefold() and as Java's
String.equalsIgnoreCase (per character: equal, or equal upper cases, or equal lower cases of
the upper cases), which CCV's JSON reader may use. casefold() left `ı` (dotless i, whose
upper case is `I`) apart from `i`: `shıppingCost` passed the pricing check beside
`shippingCost`."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.key_fold import fold


def _simple_upper(c: str) -> str:
    """Java's Character.toUpperCase: Unicode's simple (one character) upper case. Python gives
    the full one; where that is longer, the simple one is the title case when that is one
    character (`ᾳ` -> `ᾼ`), else the character itself (`ß`, `ŉ`, `ﬀ`)."""
    for mapped in (c.upper(), c.title()):
        if len(mapped) == 1:
            return mapped
    return c


def _simple_lower(c: str) -> str:
    """Java's Character.toLowerCase: only `İ` has a longer full lower case (`i` + U+0307);
    its simple one is `i`."""
    low = c.lower()
    return low if len(low) == 1 else low[0]


def _java_key(c: str) -> str:
    return _simple_lower(_simple_upper(c))


def java_equal_ignoring_case(a: str, b: str) -> bool:
    """String.equalsIgnoreCase, per code point (as Java 16 and later compare)."""
    return len(a) == len(b) and all(
        x == y or _simple_upper(x) == _simple_upper(y) or _java_key(x) == _java_key(y)
        for x, y in zip(a, b, strict=True)
    )


def test_the_letters_casefold_and_java_disagree_on_fold_together() -> None:
    assert fold("shıppingCost") == fold("shippingCost") == fold("SHIPPINGCOST")
    assert fold("İ") == fold("i") == fold("I") == fold("ı") == fold("i\u0307")
    assert fold("ſ") == fold("s") == fold("S")
    assert fold("\u212a") == fold("k") == fold("K")  # the Kelvin sign
    assert fold("ß") == fold("ss") == fold("SS") == fold("ẞ")
    assert fold("ς") == fold("σ") == fold("Σ")
    assert fold("notıficationUrl") == fold("notificationURL")
    assert fold("orderStatus") != fold("orderstatu5")


# Every code point Java's rule makes equal to another, grouped by that rule's key: each group
# must fold as one (the fold and both rules work per character, so this covers all strings).
def test_every_character_java_takes_for_another_folds_the_same() -> None:
    folds: dict[tuple[str, str], set[str]] = {}
    # Unicode's cased characters all stand below U+20000 (the last, Adlam's, at U+1E943).
    assert "\U0001e922".upper() == "\U0001e900"
    for code in range(0x20000):
        c = chr(code)
        upper = _simple_upper(c)
        if upper == c and c.casefold() == c and c.lower() == c:
            continue  # no case: equal to no other character (but those mapped to it, below)
        folded = fold(c)
        for rule, key in (("java", _java_key(c)), ("upper", upper), ("casefold", c.casefold())):
            folds.setdefault((rule, key), set()).add(folded)
            if len(key) == 1:  # the character mapped to, itself a member of the group
                folds[rule, key].add(fold(key))
    assert {k: f for k, f in folds.items() if len(f) > 1} == {}


_LETTERS = st.sampled_from("aAiIıİsSſkK\u212aßẞσςΣᾳᾼ\u0307xX- ")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_LETTERS, _LETTERS), max_size=12), st.text(max_size=8))
def test_strings_java_takes_as_equal_fold_the_same(pairs: list[tuple[str, str]], tail: str) -> None:
    a = "".join(x for x, _ in pairs) + tail
    b = "".join(y for _, y in pairs) + tail.swapcase()
    if java_equal_ignoring_case(a, b):
        assert fold(a) == fold(b)
    if a.casefold() == b.casefold():
        assert fold(a) == fold(b)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=16))
def test_a_string_folds_as_its_java_equal_upper_and_lower_case(text: str) -> None:
    upper = "".join(_simple_upper(c) for c in text)
    lower = "".join(_simple_lower(c) for c in text)
    for other in (upper, lower):
        if java_equal_ignoring_case(text, other):
            assert fold(text) == fold(other)
