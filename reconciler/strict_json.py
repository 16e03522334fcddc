"""JSON as RFC 8259 defines it, for bodies reconciler records or passes on to a provider.

Python's json module also takes `NaN` / `Infinity` and `\\u` escapes of half a character (a lone
surrogate). Neither could be passed on: the first is not JSON, the second not UTF-8, so a body
holding one would fail only later, after its submission was recorded.

A number with a fraction or an exponent becomes a float, and a body is passed on re-encoded, so
such a number is sent as the float's shortest text. That is only honest when the float is the
number that was written: one that overflows (`1e999`, infinite), underflows (`1e-400`, 0.0) or
has more digits than a float keeps (`99999999999999.99`) would reach CCV as another number than
the one reconciler checked, so it is refused. Integers stay exact (up to the 4,300 digits
Python reads).

A provider's answer is read by `loads_answer`: as Python reads JSON, but an integer longer than
Python's int takes, which is legal JSON, does not make the whole answer unreadable (a CCV
status answer, the order id in CCV's answer to a submit). A status answer holding `NaN` is no
answer; CCV's answer to a submit naming its order still names it, whatever else it holds: read
as none, the submit could be closed as never sent, and made twice.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from .model import clipped

# A `\u` escape of a surrogate; only then is the decoded document checked for a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# A number in an error is cut to this many characters: it may be a page of digits.
_SHOWN = 40


class NotJSON(ValueError):
    """Text json.loads takes but JSON does not."""


class RepeatedKey(NotJSON):
    """An object naming one key twice: Python keeps the last, other readers the first."""


class NotExact(NotJSON):
    """A JSON number that would be passed on as another number than the one written."""


def _refuse_constant(name: str) -> object:
    raise NotJSON(f"{name} is not a JSON number")


def _exact_float(text: str) -> float:
    value = float(text)
    if repr(value) == text:
        return value  # the usual case, written as Python writes it
    shown = clipped(text, _SHOWN, quoted=False)
    if not math.isfinite(value):
        raise NotExact(f"the number {shown} is too large to pass on (beyond 1.8e308)")
    try:
        exact = Decimal(repr(value)) == Decimal(text)
    except InvalidOperation:  # an exponent of more digits than a Decimal takes
        mantissa = text.lower().partition("e")[0]
        exact = value == 0.0 and not any(digit in mantissa for digit in "123456789")
    if not exact:
        raise NotExact(
            f"the number {shown} cannot be passed on exactly (it would be sent as {value!r}); "
            "15 significant digits always can"
        )
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedKey(f"the key {clipped(key, _SHOWN)} is given twice in one object")
            seen.add(key)
    return document


def given(raw: bytes, *, exact: bool = True) -> object:
    """Decode a document reconciler was given (an API body, a file, a sandbox request): one
    that can be passed on (`exact`: NotJSON for what Python alone accepts, NotExact for a
    number it would change, RepeatedKey for a key given twice), or as Python reads JSON (the
    sandbox, as lenient as CCV); never with half a character. Whatever is no such document is
    NotJSON, in words to show: one nested deeper than Python's parser goes (a RecursionError,
    not a ValueError) included."""
    try:
        if exact:
            document = json.loads(
                raw,
                parse_constant=_refuse_constant,
                parse_float=_exact_float,
                object_pairs_hook=_unique_keys,
            )
        else:
            document = json.loads(raw)
    except NotJSON:
        raise
    except RecursionError:
        raise NotJSON("it nests too deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotJSON(str(exc)) from None
    except ValueError:
        # int's digit limit, the one other ValueError: Python's words advise
        # sys.set_int_max_str_digits(), which no sender can call.
        raise NotExact(
            f"a number too long (more than {sys.get_int_max_str_digits():,} digits)"
        ) from None
    _refuse_lone_surrogate(raw, document)
    return document


def _refuse_lone_surrogate(raw: bytes, document: object) -> None:
    """Raise NotJSON if `document`, decoded from `raw`, holds a lone surrogate (a `\\u` escape
    of half a character): no UTF-8 text can hold it, so it cannot be passed on or shown."""
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise NotJSON("a \\u escape names half a character (a lone surrogate)") from None


def loads_answer(
    body: bytes | str,
    hook: Callable[[list[tuple[str, object]]], object] | None = None,
    *,
    constants: bool = True,
) -> object:
    """json.loads (ValueError, RecursionError) of an answer's bytes or its text, except that an
    integer too long for Python's int (over 4,300 digits) does not fail the answer: only then
    is the body parsed again, its integers kept as written (Digits), so the usual answer costs
    nothing more. `constants`: whether `NaN` and `Infinity`, which are not JSON, are taken
    (else NotJSON)."""
    try:
        return _loads(body, hook, constants, None)
    except (json.JSONDecodeError, NotJSON):
        raise
    except ValueError:  # int's digit limit: the decoder raises a plain ValueError for it
        return _loads(body, hook, constants, Digits)


# What reads the usual answer when `NaN` is refused: json.loads given any such argument makes a
# decoder for every call.
_NO_CONSTANTS = json.JSONDecoder(parse_constant=_refuse_constant)


def _loads(
    body: bytes | str,
    hook: Callable[[list[tuple[str, object]]], object] | None,
    constants: bool,
    parse_int: Callable[[str], object] | None,
) -> object:
    if constants:
        return json.loads(body, object_pairs_hook=hook, parse_int=parse_int)
    if hook is None and parse_int is None:
        if isinstance(body, str):
            return _NO_CONSTANTS.decode(body)
        # As json.loads reads bytes: in UTF-8, -16 or -32, told by the first bytes.
        return _NO_CONSTANTS.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    return json.loads(
        body, object_pairs_hook=hook, parse_constant=_refuse_constant, parse_int=parse_int
    )


class Digits:
    """A JSON integer too long for int(), as written: a number still, not text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def json_type(value: object) -> str:
    """The JSON type of a decoded value, named as Python names it (`int`, `str`, `list`)."""
    return "int" if isinstance(value, Digits) else type(value).__name__
