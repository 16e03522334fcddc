"""A secret echoed with some of its characters percent-encoded and others not (`Zk%3D7!pL9` for
`Zk=7!pL9`, `t%5Fsand_box`), hex digits of either case, `+` for a space, is masked like the
forms an encoder makes: whole, and cut short where a text ends. Through the public functions,
and a CCV submit answered `201` with such a `Location`, through the daemon's API."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from urllib.parse import unquote, unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.redact import (
    MASK,
    answer_forms,
    given_secrets,
    holds_secret,
    redact,
    redact_body,
)
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import Reply
from tests.server.test_api import serve_api

# (secret, its echo in a text, the text as it is to be kept)
ECHOES = [
    # `=` escaped, `!` (which `quote` escapes) not: yarl keeps a query so.
    (
        "Zk=7!pL9xQ-4mW2",
        "/orders/view?orderId=Zk%3D7!pL9xQ-4mW2&lang=en 100%",
        "/orders/view?orderId=***&lang=en 100%",
    ),
    # Lower-case hex beside upper case, in a JSON body.
    (
        "Zk=7!pL9xQ-4mW2",
        '{"error": "key Zk%3d7!pL9xQ%2D4mW2 unknown"}',
        '{"error": "key *** unknown"}',
    ),
    # One `_` escaped, the other not, in a URL query.
    (
        "t_sand_box-9Kq2",
        "https://ccv.example/o?key=t%5Fsand_box-9Kq2&x=%41",
        "https://ccv.example/o?key=***&x=%41",
    ),
    # `+` for one space, `%20` for another, `!` as it is.
    ("open sesame 42!x", "pw=open+sesame%2042!x; 5% off", "pw=***; 5% off"),
    # A letter needlessly escaped, a capital quoted in lower case.
    ("Zk7QpL9x-4mW2", "id=zk7%51pl9x-4mW2", "id=***"),
    # A secret that begins inside a start of itself that is not it (`zzzz=` in `zzzzz%3D`).
    ("zzzz=Q9!kx7", "v=zzzzz%3DQ9!kx7.", "v=z***."),
]


@pytest.mark.parametrize(("secret", "text", "kept"), ECHOES)
def test_a_secret_in_any_mix_of_escapes_is_masked(secret: str, text: str, kept: str) -> None:
    assert redact(text, [secret]) == kept
    assert redact_body(text.encode(), [secret]) == kept.encode()
    assert holds_secret(text, given_secrets([secret]))
    assert holds_secret(text, answer_forms(secret, []))


CUTS = [
    # Cut after a few characters: what `redact` keeps ends with none of them.
    ("Zk=7!pL9xQ-4mW2", "refused: Zk%3D7!p", "refused: ***", "refused: ***"),
    # Cut inside an escape.
    ("Zk=7!pL9xQ-4mW2", "refused: Zk%3D7!pL9xQ%2", "refused: ***", "refused: ***"),
    # Cut short before an ellipsis.
    ("t_sand_box-9Kq2", "key t%5Fsand_b... unknown", "key ***... unknown", "key ***... unknown"),
    # Seven characters at the end: a text we cut; a provider's whole answer is not cut there.
    ("Zk=7!pL9xQ-4mW2", "code Zk%3D7!", "code ***", "code Zk%3D7!"),
    # A `%` of the secret's cut inside its escape (brief n67: the hypothesis test found it
    # kept, `%` taken as itself and the cut `2` as no character of it).
    ("Zk7%pL9xQ!2", "code Zk%37%2", "code ***", "code Zk%37%2"),
]


@pytest.mark.parametrize(("secret", "text", "kept", "body"), CUTS)
def test_a_mix_cut_short_is_masked(secret: str, text: str, kept: str, body: str) -> None:
    assert redact(text, [secret]) == kept
    assert redact_body(text.encode(), [secret]) == body.encode()


def test_a_start_of_a_mix_is_held_wherever_it_stands() -> None:
    # Eight characters of it, one escaped: a start of the key, not a word.
    assert holds_secret("ref Zk%3D7!p-ok", answer_forms("Zk=7!pL9xQ-4mW2", []))
    assert not holds_secret("Zk= is 100% fine", answer_forms("Zk=7!pL9xQ-4mW2", []))


SECRET_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 @&=+/%?#!$-_.~é€\\"
FILLER_CHARS = "abcdefghijklmnopqrstuvwxyz:"


def escape(c: str, lower: bool) -> str:
    hexes = "".join(f"%{b:02X}" for b in c.encode())
    return hexes.lower() if lower else hexes


@st.composite
def mixes(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A secret, and its characters each as it is, escaped (hex of either case) or, a space,
    a `+`."""
    secret = draw(st.text(alphabet=SECRET_CHARS, min_size=8, max_size=40))
    atoms = []
    for c in secret:
        way = draw(st.sampled_from(["plain", "upper", "lower", "plus"]))
        if way == "plus" and c == " ":
            atoms.append("+")
        else:
            atoms.append(c if way == "plain" else escape(c, way == "lower"))
    return secret, atoms


def leaked(text: str, echoed: str) -> list[str]:
    """The pieces of four characters of `echoed` in `text` (the filler holds none of its
    characters, the mask neither)."""
    return [echoed[i : i + 4] for i in range(len(echoed) - 3) if echoed[i : i + 4] in text]


@given(
    mix=mixes(),
    before=st.text(alphabet=FILLER_CHARS, max_size=50),
    after=st.text(alphabet=FILLER_CHARS, max_size=50),
    cut=st.integers(min_value=3, max_value=40),
    partial=st.integers(min_value=0, max_value=2),
)
def test_any_mix_whole_or_cut_leaves_nothing_of_the_secret(
    mix: tuple[str, list[str]], before: str, after: str, cut: int, partial: int
) -> None:
    secret, atoms = mix
    echoed = "".join(atoms)
    masked = redact(before + echoed + after, [secret])
    assert not leaked(masked, echoed), masked
    # Cut after `cut` characters of the secret, and inside the next one's escape.
    start = "".join(atoms[:cut]) + (atoms[cut][:partial] if cut < len(atoms) else "")
    masked = redact(before + start, [secret])
    assert masked.endswith(MASK) and not leaked(masked, start), masked


# --- a CCV submit answered 201 with such a Location, through the daemon's API ----------------

KEY = "Zk=7!pL9xQ-4mW2"
ORDER = "5d0e7c1a-2b3f-4a6d-9e8c-7f1a2b3c4d5e"


def holds_key(text: str) -> bool:
    """Whether `text` has the key, as it is or read as a URL's query."""
    return any(KEY in read(text) for read in (str, unquote, unquote_plus))


async def test_a_201_location_with_the_key_in_a_mix_is_kept_and_passed_on_masked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # `%3D` stays as it came (yarl keeps it in a query); `!` is not escaped, as `quote` would.
    location = "/orders/view?orderId=Zk%3d7!pL9xQ-4mW2"
    async with FakeCCVWrites(api_key=KEY) as fake:
        fake.submit_replies = [
            Reply(201, json.dumps({"orderId": ORDER}), "application/json", {"Location": location})
        ]
        async with serve_api(tmp_path, fake, ccv_key=KEY) as api:
            status, document, headers = await api.call(
                "POST", "/api/v1/ccv/orders", body=submit_body(externalReference="MIX-1")
            )
            stored = api.rows("SELECT * FROM submissions") + api.rows("SELECT * FROM events")
    assert (status, document) == (201, {"orderId": ORDER})
    assert headers["Location"].endswith(f"/orders/view?orderId={MASK}"), headers["Location"]
    said = [f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records]
    assert "ccv.submit_location_differs" in "\n".join(said)  # the Location was logged
    assert any(MASK in str(row) for row in stored)  # and kept
    for text in [headers["Location"], *said, *map(str, stored)]:
        assert not holds_key(text), text
    files = [p for p in tmp_path.iterdir() if p.name.startswith("reconciler.db")]
    assert not [p for p in files if holds_key(p.read_bytes().decode("latin-1"))]
    events = tmp_path / "events.jsonl"
    assert not holds_key(events.read_text() if events.exists() else "")


# --- brief n67 (review 29j of 4f7bcd7) ----------------------------------------------------


@pytest.mark.parametrize("masked", ["whole", "start"])
def test_an_answer_of_escapes_repeated_is_masked_in_linear_time(masked: str) -> None:
    secret = "Zk=7!pL9qR2xW4vB"
    escaped = "".join(f"%{b:02x}" for b in secret.encode())
    echo = escaped if masked == "whole" else escaped[:9]  # `Zk=` escaped: a start, cut
    text = echo * (100_000 // len(echo)) + " end"
    started = time.thread_time()  # CPU time: a loaded machine's wall time was 20 times it
    kept, body = redact(text, [secret]), redact_body(text.encode(), [secret])
    took = time.thread_time() - started
    # Was: 40 s for `redact` (35 s more for `redact_body`), the event loop blocked: the cut
    # escape at a mix's end was looked for to the end of every run of escapes, at every match.
    # Now under 0.1 s.
    assert took < 1.0
    assert kept == body.decode() and kept.endswith(" end") and set(kept[: -len(" end")]) == {"*"}
