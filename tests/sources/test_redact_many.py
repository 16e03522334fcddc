"""A config of many secrets: a text's end cut inside one is found as with one secret, and at a
cost that does not grow with their number (a CCNow per-order error line is read thousands of
times a poll, on the event loop)."""

from __future__ import annotations

import re
import sys
from types import FrameType

from hypothesis import example, given
from hypothesis import strategies as st

from reconciler.redact import (
    MIN_BODY_FRAGMENT,
    SecretForms,
    answer_secrets,
    redact,
    secret_forms,
)
from reconciler.secret_encodings import encodings
from reconciler.sources.ccnow_answer import parse_answer

PASSWORD = "Pw0rd-Zq9+&x=7%Se"
CONFIG = [
    PASSWORD,
    "reconciler-api-token-2026-xyz",
    "ccv-key-ABCDEF123456",
    "recv-secret-0123456789abcdef",
    "notif-token-zzzz-1234567890",
    "ccv2-key-XYZ987654321",
]


def _cut_end_of_each(forms: list[str], text: str, fewest: int) -> int:
    """How long a start of a form (shorter than it) the text's last MIN_BODY_FRAGMENT
    characters end with, percent escapes in either case: each form asked in turn."""
    tail = text[-MIN_BODY_FRAGMENT:]
    tails = {tail, re.sub(r"%[0-9A-Fa-f]{1,2}", lambda m: m[0].upper(), tail)}
    longest = 0
    for form in forms:
        for size in range(min(len(form) - 1, len(tail)), max(fewest, 1) - 1, -1):
            if any(t.endswith(form[:size]) for t in tails):
                longest = max(longest, size)
                break
    return longest


@given(
    # Any text: non-ASCII (its 8-bit and escaped forms), quotes and backslashes (their JSON and
    # repr forms), shorter than `fewest`.
    secrets=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8),
    pick=st.integers(min_value=0),
    size=st.integers(min_value=0, max_value=MIN_BODY_FRAGMENT + 2),
    before=st.text(alphabet="abcdefghij :%0123456789ABCDEF", max_size=12),
    fewest=st.sampled_from([1, 3, 5, MIN_BODY_FRAGMENT - 1]),
    # A server that writes its percent escapes in lower case (%2b): the end as it sent it.
    lower=st.booleans(),
)
@example(secrets=CONFIG, pick=9, size=3, before="x_password=", fewest=3, lower=False)  # Pw0
@example(secrets=["a+b"], pick=0, size=6, before="x=", fewest=3, lower=True)
def test_a_start_of_one_of_many_secrets_at_the_end_is_found_as_form_by_form(
    secrets: list[str], pick: int, size: int, before: str, fewest: int, lower: bool
) -> None:
    forms = secret_forms(frozenset(secrets))
    assert forms is not None
    each = sorted({form for secret in secrets for form in encodings(secret)})
    form = each[pick % len(each)]
    end = form[:size]
    text = before + (end.lower() if lower else end)
    assert forms.cut_end(text, fewest) == _cut_end_of_each(each, text, fewest), text


def test_a_ccnow_error_line_under_six_secrets_is_masked_as_under_one() -> None:
    many = answer_secrets(PASSWORD, CONFIG)
    for line, secret, kept in [
        (
            "987-00-0001 not_found order not found",
            PASSWORD,
            "987-00-0001 not_found order not found",
        ),
        ("error_message x_password=Pw0", PASSWORD, "error_message x_password=***"),
        (
            "error_message x_password=Pw0rd-Zq9+ is wrong",
            PASSWORD,
            "error_message x_password=*** is wrong",
        ),
        ("error_message bad token rec", CONFIG[1], "error_message bad token ***"),
        ("error_message bad key ccv3", CONFIG[5], "error_message bad key ccv3"),
        ("error_message bad key ccv2-k", CONFIG[5], "error_message bad key ***"),
        ("error_message bad secret recv-secret-01", CONFIG[3], "error_message bad secret ***"),
    ]:
        assert redact(line, many) == kept == redact(line, [secret]), line
    answer = parse_answer(b"987-00-0001 wrong password Pw0rd-Zq9+\n", secrets=many)
    assert PASSWORD[:8] not in repr(answer)


def _calls(forms: SecretForms, text: str) -> int:
    """How many Python and built-in calls looking at the end of `text` makes: a cost that no
    machine's load changes."""
    count = 0

    def profile(_frame: FrameType, event: str, _arg: object) -> None:
        nonlocal count
        count += event in ("call", "c_call")

    sys.setprofile(profile)
    try:
        forms.cut_end(text, 3)
    finally:
        sys.setprofile(None)
    return count


def test_a_texts_end_costs_as_much_under_many_secrets_as_under_one() -> None:
    # Each start of each form of each secret was asked in turn: with six secrets a CCNow
    # per-order error line cost eight times what it cost with one.
    one = secret_forms(frozenset([PASSWORD]))
    many = secret_forms(frozenset([*CONFIG, *(f"secret-{n:04d}-of-the-config" for n in range(40))]))
    assert one is not None and many is not None
    for line in ("987-00-0001 not_found order not found", "error %2a"):
        assert _calls(many, line) == _calls(one, line), line
