"""Secrets echoed by a provider, in any encoding and cut anywhere, never reach a kept text."""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from reconciler.config import Secret
from reconciler.redact import (
    MASK,
    MIN_BODY_FRAGMENT,
    Secrets,
    answer_forms,
    answer_secrets,
    config_secrets,
    given_secrets,
    held,
    holds_secret,
    redact,
    redact_body,
    secret_forms,
    text_forms,
)
from reconciler.sources.ccnow_answer import MAX_TEXT_LENGTH, parse_answer
from reconciler.sources.errors import AuthenticationFailed, SourceError
from reconciler.writes.pricing import check_pricing

# The secret's alphabet and the filler's share no character, so any piece of an encoded
# secret that is four characters long and shows up in the result is a leak, not a coincidence.
SECRET_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 @&=+/%?#!$-_.~é€\\"
FILLER_CHARS = "abcdefghijklmnopqrstuvwxyz:"
WINDOW = 4

ENCODERS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "form": quote_plus,
    "form_all": lambda s: quote_plus(s, safe=""),
    "percent": quote,
    "percent_all": lambda s: quote(s, safe=""),
    "percent_lower": lambda s: re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quote(s, safe="")),
    "html": html.escape,
    "json": lambda s: json.dumps(s)[1:-1],
}

secrets = st.text(alphabet=SECRET_CHARS, min_size=8, max_size=60)
filler = st.text(alphabet=FILLER_CHARS, max_size=300)


def leaks(text: str, secret: str, window: int = WINDOW) -> list[str]:
    """Return the pieces of `window` characters of any encoding of `secret` that `text`
    contains."""
    found = []
    for encode in ENCODERS.values():
        form = encode(secret)
        for start in range(max(1, len(form) - window + 1)):
            piece = form[start : start + window]
            if len(piece) == window and piece in text:
                found.append(piece)
    return found


@given(
    secret=secrets,
    before=filler,
    after=filler,
    encoder=st.sampled_from(sorted(ENCODERS)),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=700)),
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
)
@example(
    secret="p@ss word/+%&=" * 3,
    before="x" * 190,
    after="",
    encoder="form",
    cut=None,
    limit=MAX_TEXT_LENGTH,
)
@example(secret="0000000&", before="", after="a", encoder="json", cut=None, limit=None)
@example(secret="0000000&", before="", after="a:", encoder="json", cut=None, limit=None)
def test_no_piece_of_a_secret_survives(
    secret: str, before: str, after: str, encoder: str, cut: int | None, limit: int | None
) -> None:
    echoed = before + ENCODERS[encoder](secret) + after
    if cut is not None:  # the provider cut its own text
        echoed = echoed[:cut]
    out = redact(echoed, [secret], limit=limit)
    assert leaks(out, secret) == []
    if limit is not None:
        assert len(out) <= limit
    # A body passed on whole (the API's CCV answers): masked alike, the rest as it came; an
    # end cut inside the secret only from MIN_BODY_FRAGMENT characters on (three end many a
    # word of a whole answer).
    body = redact_body(echoed.encode(), [secret]).decode()
    assert leaks(body, secret, MIN_BODY_FRAGMENT) == []
    assert body.startswith(before[:cut])
    if cut is None:
        # What follows the secret is kept, but for the part that goes on into a longer form of
        # it (`0000000&a` of `0000000&amp;`): a start of a form is masked where it stands
        # (it holds a sign) and, at the answer's end, as one cut short there.
        sent = ENCODERS[encoder](secret)
        forms = [encode(secret) for encode in ENCODERS.values()]
        kept = [after] + [
            after[k:]
            for k in range(1, len(after) + 1)
            if any(form.startswith(sent + after[:k]) for form in forms)
        ]
        assert body in {before + MASK + rest for rest in kept}, (body, kept)


@given(secret=secrets, before=filler, encoder=st.sampled_from(sorted(ENCODERS)))
def test_a_ccnow_error_text_quotes_no_piece_of_the_password(
    secret: str, before: str, encoder: str
) -> None:
    body = f"error_message {before}x_password={ENCODERS[encoder](secret)}&x_action_1=query\n"
    with pytest.raises(SourceError) as caught:
        parse_answer(body, secrets=[secret])
    assert leaks(str(caught.value), secret) == []
    assert len(str(caught.value)) <= len("error_message: ") + MAX_TEXT_LENGTH


@given(secret=secrets, before=filler, encoder=st.sampled_from(sorted(ENCODERS)))
def test_a_line_quoted_in_a_protocol_error_holds_no_piece_of_the_password(
    secret: str, before: str, encoder: str
) -> None:
    with pytest.raises(SourceError) as caught:
        parse_answer(f"{before}{ENCODERS[encoder](secret)}\n", secrets=[secret])
    assert leaks(str(caught.value), secret) == []


def test_text_without_secrets_is_only_cut() -> None:
    assert redact("system down for maintenance", ["hunter2-secret"]) == (
        "system down for maintenance"
    )
    assert redact("abcdef", [], limit=3) == "abc"
    assert redact("wrong password hunter2-secret!", ["hunter2-secret"]) == (
        f"wrong password {MASK}!"
    )


def test_every_secret_of_a_config_is_found() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Account:
        password: Secret
        token: Secret | None

    @dataclass(frozen=True)
    class Whole:
        accounts: tuple[Account, ...]
        by_name: dict[str, Secret]

    config = Whole((Account(Secret("a1"), None), Account(Secret("b2"), Secret("c3"))), {})
    assert sorted(config_secrets(config)) == ["a1", "b2", "c3"]


def test_a_password_echoed_in_latin1_is_masked_in_the_error_text() -> None:
    # CCNow is an old CGI: a password with a non-ASCII letter may come back in latin-1 bytes,
    # which the parser keeps as stray bytes and shows as U+FFFD.
    password = "geheim\u00c4123"
    body = b"error_message login failed for password geheim\xc4123\n"
    with pytest.raises(AuthenticationFailed) as caught:
        parse_answer(body, secrets=[password])
    assert "geheim" not in str(caught.value) and "123" not in str(caught.value)
    answer = parse_answer(b"396-10-1142 error_message bad geheim\xc4123\n", secrets=[password])
    error = answer.orders[0].error
    assert error is not None and "geheim" not in error and error.encode("utf-8")
    assert redact("pw=geheim\ufffd123", [password]) == "pw=***"


@pytest.mark.parametrize(
    "echo",
    [
        "P%E4ssw%F6rd-123",
        "p%e4ssw%f6rd-123",
        "P%E4ssw%F6rd%2D123",
        "P%E4ssw%F6rd+123",
        "%50%E4%73%73%77%F6%72%64%2D%31%32%33",  # every byte
        "P\u00e4ssw%F6rd-123",  # one letter escaped, one not
    ],
)
def test_a_password_echoed_percent_escaped_in_latin1_is_masked(echo: str) -> None:
    # A latin-1 form (an old CGI's) percent-escapes the password's latin-1 bytes.
    password = "P\u00e4ssw\u00f6rd-123" if "+" not in echo else "P\u00e4ssw\u00f6rd 123"
    assert redact(f"error_message bad password {echo}", [password]) == (
        "error_message bad password ***"
    )


def test_a_key_echoed_in_its_basic_auth_header_is_masked() -> None:
    # CCV's scheme: the key is the user name, the password empty; a gateway may echo the header.
    key = "t_secretkey123456"
    header = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    body = f'{{"error": "bad request", "authorization": "{header}"}}'
    assert redact(body, [key]) == '{"error": "bad request", "authorization": "Basic ***"}'
    assert (
        redact_body(body.encode(), [key])
        == b'{"error": "bad request", "authorization": "Basic ***"}'
    )


@pytest.mark.parametrize("body", [b"Order created", b'{"status": "tedious"}'])
def test_a_whole_answer_ending_like_the_start_of_a_secret_is_passed_on_as_it_is(
    body: bytes,
) -> None:
    # Three letters of a secret end many a word: only a longer piece says the provider cut it.
    assert redact_body(body, ["tedious-password-1"]) == body


def test_a_secret_cut_before_an_ellipsis_or_in_capitals_is_masked() -> None:
    password = "Zq9+pw&x=7%Secret"
    # A start in capitals counts from eight characters on; a shorter one only as it was sent.
    text = f"password {password[:13]}... refused for {password.upper()} and {password.upper()[:9]}"
    assert redact(text, [password]) == f"password {MASK}... refused for {MASK} and {MASK}"


def test_words_that_begin_like_a_secret_are_not_masked() -> None:
    # A CCV answer passed back to an API client keeps its field names: only a whole secret, or
    # one cut short at the end of the text or before an ellipsis, is masked.
    body = b'{"deliveryAddress": "x", "customerReference": "y", "note": "Deliver..."}'
    assert redact_body(body, ["Delivery!2024", "customer2024"]) == body


@pytest.mark.parametrize(
    ("status", "secret"),
    [
        ("pending review", "review-2024"),
        ("on hold", "old-Xy9#pw"),
        ("order not pending", "Pending#2024"),
    ],
)
def test_a_status_word_that_shares_letters_with_a_secret_holds_none(
    status: str, secret: str
) -> None:
    assert not holds_secret(status, secret_forms(frozenset([secret])))
    answer = parse_answer(f"396-10-1142 {status}\n", secrets=[secret])
    assert answer.orders[0].status == status


def test_a_start_of_a_secret_cut_short_is_held_and_masked() -> None:
    # CCNow quoting the password cut short as an order's status: kept nowhere.
    forms = secret_forms(frozenset(["hunter2secret"]))
    assert holds_secret("wrong password hunter2sec", forms)
    assert holds_secret("wrong password HUNTER2SEC...", forms)
    assert redact("order not pending", ["Pending#2024"]) == "order not pending"
    # A short end in another case than sent is a word, not a secret cut short.
    assert redact("order not PENDI", ["Pending#2024"]) == "order not PENDI"


# CPU time of this thread, not wall time: on a loaded machine (the suite runs in parallel,
# other jobs beside it) the wall time of a 0.6 s scan was 13 s. A search per position costs
# the CPU far more than this bound whatever the load.
SCAN_BOUND_S = 6.0


def test_ellipses_cost_no_more_than_a_scan() -> None:
    # One search over the text, whatever it holds: a 1 MB answer of ellipses took seconds on
    # the event loop (longer than the watchdog's 30 s for CCNow's largest answers).
    body = b"Zq9+pw&x..." * 100_000
    started = time.thread_time()
    redact_body(body, ["Zq9+pw&x=7%Secret"])
    redact(body.decode(), ["Zq9+pw&x=7%Secret"], limit=200)
    # Under 1 s on a quiet machine; the bound leaves room for a slower one, and a search per
    # position would still be far past it.
    assert time.thread_time() - started < SCAN_BOUND_S


@pytest.mark.parametrize(
    "body",
    [
        b"Zq9+pw&x=7%Sex " * 70_000,  # a long start of the secret, again and again
        b"Zq9+pw&x" * 70_000,  # starts one after the other
    ],
)
def test_starts_of_a_secret_through_a_large_answer_cost_no_more_than_a_scan(
    body: bytes,
) -> None:
    started = time.thread_time()
    # Each start is masked now wherever it stands: 1 MB of them is still one pass.
    masked = redact_body(body, ["Zq9+pw&x=7%Secret"])
    redact(body.decode(), ["Zq9+pw&x=7%Secret"], limit=200)
    # Under 1 s on a quiet machine; the bound leaves room for a slower one, and a search per
    # position would still be far past it.
    assert time.thread_time() - started < SCAN_BOUND_S
    assert b"Zq9+pw&x" not in masked


@given(
    secret=secrets,
    before=filler,
    after=filler,
    encoder=st.sampled_from(sorted(ENCODERS)),
    size=st.integers(min_value=MIN_BODY_FRAGMENT, max_value=200),
)
@example(
    secret="Pw0rd-Zq9+&x=7%Se",
    before="invalid login, x_password=",
    after=" is wrong",
    encoder="raw",
    size=10,
)
def test_a_start_of_a_secret_echoed_amid_a_text_is_masked(
    secret: str, before: str, after: str, encoder: str, size: int
) -> None:
    # A provider quotes what we sent up to a sign it stops at, and goes on: eight characters
    # or more of a secret's start, holding a digit or a sign other than `-_. `, are masked
    # wherever they stand.
    form = ENCODERS[encoder](secret)
    start = form[: min(size, len(form) - 1)]
    assume(len(start) >= MIN_BODY_FRAGMENT and not all(c.isalpha() or c in "-_. " for c in start))
    echoed = f"{before}{start} {after}"
    assert leaks(redact(echoed, [secret]), secret) == []
    assert leaks(redact_body(echoed.encode(), [secret]).decode(), secret) == []
    if (before, after) == ("invalid login, x_password=", " is wrong"):
        assert redact(echoed, [secret]) == f"invalid login, x_password={MASK}  is wrong"


def test_a_ccnow_login_error_echoing_a_start_of_the_password_keeps_none_of_it() -> None:
    password = "Pw0rd-Zq9+&x=7%Se"
    body = b"error_message invalid login, x_password=Pw0rd-Zq9+ is wrong\n"
    with pytest.raises(AuthenticationFailed) as caught:
        parse_answer(body, secrets=[password])
    assert "Pw0rd" not in str(caught.value) and "is wrong" in str(caught.value)
    answer = parse_answer(b"396-10-1142 error_message bad PW0RD-ZQ9+ here\n", secrets=[password])
    error = answer.orders[0].error
    assert error is not None and "PW0RD" not in error and "here" in error
    # Kept as a status word, it would be in the database and the log verbatim.
    assert answer.orders[0].status is None
    assert parse_answer(b"396-10-1142 on Pw0rd-Zq9 hold\n", secrets=[password]).orders[0].unreadable


def test_a_whole_secret_in_any_form_and_case_is_held() -> None:
    key = "t_fake-ccv-key-3f9a1c"
    forms = secret_forms(frozenset([key]))
    basic = base64.b64encode(f"{key}:".encode()).decode()
    for text in (f"bad key {key.upper()}", f"Basic {basic}", quote_plus(f"&{key}&")):
        assert holds_secret(text, forms), text


def test_a_cut_start_is_found_beside_a_letter_lower_makes_two_and_inside_a_run() -> None:
    # "İ" lower-cases to two characters: places in the copy must still be places in the text.
    secret = "Zq9+pw&x=7%SeCret"
    assert redact("İ bad password Zq9+pw&x=7%Se... refused", [secret]) == (
        f"İ bad password {MASK}... refused"
    )
    assert holds_secret("İ Zq9+pw&x=7", secret_forms(frozenset([secret])))
    # A head that begins inside an earlier one is found too.
    assert redact("key aaaaaaaaaaaX...", ["aaaaaaaaaXYZ123"]) == f"key aa{MASK}..."
    # A secret written with a lower-case escape of its own, cut short at the end.
    assert redact("bad pw ab%2f", ["ab%2fQWERTYUIOP"]) == f"bad pw {MASK}"


def test_a_status_word_a_password_begins_with_is_a_status() -> None:
    # Letters only: a word, not a password cut short (that one holds a digit or a sign).
    forms = secret_forms(frozenset(["Processing#2024"]))
    assert not holds_secret("awaiting processing", forms)
    assert not holds_secret("Awaiting Processing", forms)
    assert holds_secret("wrong password Processing#20", forms)


def test_a_key_percent_encoded_beyond_need_is_masked_and_words_are_not() -> None:
    key = "t_SECRETKEY-0123.456~789"
    for encoded in (
        "t%5FSECRETKEY%2D0123%2E456%7E789",
        "t%5fsecretkey%2d0123%2e456%7e789",
        "".join(f"%{b:02X}" for b in key.encode()),
    ):
        assert redact(f"key={encoded}; refused", [key]) == "key=***; refused"
        assert redact_body(f"key={encoded}".encode(), [key]) == b"key=***"
    # A start of letters and `_` is a word; one that reaches the key's digits is the key's.
    assert redact_body(b"Order created, t_SECRET is a word", [key]) == (
        b"Order created, t_SECRET is a word"
    )
    assert redact_body(b"Order created, t_SECRETKEY-0 is a word", [key]) == (
        b"Order created, *** is a word"
    )


def test_a_start_of_a_secret_joined_by_hyphens_is_words_not_the_secret() -> None:
    # A token named after the program: its user agent and an id named the same way are words.
    token = "reconciler-api-token-2026-xyz"
    assert redact("User-Agent reconciler-0.9 refused", [token]) == (
        "User-Agent reconciler-0.9 refused"
    )
    forms = given_secrets([token])
    assert not holds_secret("reconciler-order-1", forms)
    assert not holds_secret("RECONCILER_API token", forms)
    # Up to its digits, it is the token's start: masked wherever it stands.
    assert redact("bad token reconciler-api-token-20 here", [token]) == "bad token *** here"
    assert holds_secret("ref reconciler-api-token-2", forms)


def test_a_secret_quoted_as_a_pricing_problem_quotes_it_is_masked() -> None:
    # A value a pricing problem quotes has its letters beyond ASCII escaped (`\xe4`).
    secret = "p\u00e4ssw\u00f6rd12345"
    problem = next(p for p in check_pricing({"currency": secret}) if p.path == "$.currency")
    masked = problem.masked(text_forms([secret]))
    assert leaks(masked.line(), secret) == [], masked.line()


def test_secrets_held_keep_each_search_made_of_them() -> None:
    # A search costs milliseconds; the daemon's holders ask for one per CCNow answer, API
    # request or failed pass. Held Secrets make each once; a plain list makes one per call.
    secrets = Secrets(["pw-0123456789", "t_0123456789", "short"])
    assert held(secrets) is secrets and held(["a"]) == Secrets(["a"])
    assert text_forms(secrets) is text_forms(secrets) is not None
    assert given_secrets(secrets) is given_secrets(secrets)
    assert answer_forms("own-key-0123", secrets) is answer_forms("own-key-0123", secrets)
    assert text_forms(secrets) is not given_secrets(secrets)  # "short" is only in the first
    as_list = list(secrets)
    assert text_forms(as_list) is not text_forms(as_list)
    assert text_forms(as_list) == text_forms(secrets)
    # An account's, and the config's, are held.
    assert isinstance(answer_secrets("own-key-0123", secrets), Secrets)
    assert isinstance(config_secrets({"key": Secret("k-0123456789")}), Secrets)
    assert redact("x pw-0123456789 y", secrets) == f"x {MASK} y"


def test_a_secret_held_in_a_field_not_given_to_init_is_searched_too() -> None:
    # Only Config's own `kept` (what is made of its secrets) is passed over by the walk.
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Derived:
        given: Secret
        derived: Secret = field(init=False, default=Secret("derived-signing-key-42"))

    holder = Derived(Secret("given-password-1234"))
    assert sorted(config_secrets(holder)) == ["derived-signing-key-42", "given-password-1234"]


def test_a_secret_echoed_hex_encoded_in_either_case_is_masked() -> None:
    # A program printing the password's bytes in hex (`hex=50524f...`) kept it in its reason.
    secret = "PROBEPW_Zq9+x"
    shown = secret.encode().hex()
    text = f"exit 3: hex={shown} HEX={shown.upper()} mixed={shown[:6].upper()}{shown[6:]}"
    assert redact(text, [secret]) == "exit 3: hex=*** HEX=*** mixed=***"
    assert holds_secret(f"ref-{shown}", given_secrets([secret]))


def test_a_number_ending_a_text_is_not_taken_for_a_secrets_hex_cut_short() -> None:
    # The hex form is masked whole only: "P3" is 5033 in hex, and a reason ending in an HTTP
    # status 503 is no start of it.
    assert redact("webhook answered HTTP 503", ["P3ssw0rd-Zq9"]) == "webhook answered HTTP 503"
    assert redact("id 50334e7", ["P3ssw0rd-Zq9"]) == "id 50334e7"
