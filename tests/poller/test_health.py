"""Account health rules, pure: what a pass's answers say, and failed once / recovered once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.model import EventType, SourceState
from reconciler.poller import (
    PassAnswers,
    Verdict,
    health_event,
    is_lost_wave,
    needs_probe,
    next_health,
    probe_verdict,
    verdict,
)
from reconciler.poller.health import Part, rest_is_news
from reconciler.store.sources import mask_parts, parts_mask

NOW = 1_800_000_000.0
INTERVAL_S = 10.0  # the poll interval: a backoff period after a first failure
STORE = "store-1"
FAILED, RECOVERED = EventType.SOURCE_FAILED, EventType.SOURCE_RECOVERED


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        # one order's bad answer (a 403, an error line) fails that order alone
        (PassAnswers(answered=3, failed=1), Verdict(True)),
        (PassAnswers(answered=1, failed=99, complete=True), Verdict(True)),
        # every check of a catch-up failed: the account is failing
        (PassAnswers(failed=4, complete=True), Verdict(False, "every check failed")),
        # ... and the reason names what most of them failed of
        (
            PassAnswers(failed=4, complete=True, reason="timeout"),
            Verdict(False, "every check failed (timeout)"),
        ),
        # a due tick that asked one troubled order says nothing about the account
        (PassAnswers(failed=1), None),
        (PassAnswers(failed=4), None),
        (PassAnswers(), None),
        (PassAnswers(complete=True), None),
        # the account itself refused, or the breaker opened
        (PassAnswers(answered=5, error="http 401"), Verdict(False, "http 401", key_refused=True)),
        (
            PassAnswers(failed=8, error="8 consecutive failures"),
            Verdict(False, "8 consecutive failures"),
        ),
        # orders found before answer CCV's 404 all at once: the account, not the orders
        (
            PassAnswers(failed=4, lost=4, complete=True),
            Verdict(False, "4 orders not found at once", own_word=True),
        ),
        (
            PassAnswers(answered=1, failed=3, lost=3),
            Verdict(False, "3 orders not found at once", own_word=True),
        ),
        # ... the provider's own word about orders was a part of the failure: noted
        (
            PassAnswers(failed=4, own_errors=1, complete=True, reason="timeout"),
            Verdict(False, "every check failed (timeout)", own_word=True),
        ),
        # ... orders just submitted, not known yet, hide no wave behind them
        (
            PassAnswers(failed=13, lost=3, fresh=10, complete=True),
            Verdict(False, "3 orders not found at once", own_word=True),
        ),
        (PassAnswers(answered=2, failed=2, lost=2), Verdict(True)),
        # one order going missing waits for its own confirmation
        (PassAnswers(answered=9, failed=1, lost=1), Verdict(True)),
        (PassAnswers(failed=1, lost=1, complete=True), None),
    ],
)
def test_verdict_of_a_pass(answers: PassAnswers, expected: Verdict | None) -> None:
    assert verdict(answers) == expected


def failed_by(failure: Verdict) -> SourceState:
    """An account's health after one failing pass."""
    state, _ = next_health(
        SourceState("ccnow", "default"), [("checks", failure)], now=NOW, interval_s=INTERVAL_S
    )
    return state


# A catch-up in which every check failed, two with their own error lines, three timed out.
MIXED = PassAnswers(failed=5, own_errors=2, reason="timeout", complete=True)


@pytest.mark.parametrize(
    ("answers", "failure", "expected"),
    [
        # CCNow answered about the order itself: its queries answer
        (PassAnswers(failed=1, own_errors=1), Verdict(False, "http 500"), Verdict(True)),
        # ... but not while every check of the account answered its own error line
        (
            PassAnswers(failed=1, own_errors=1, reason="order_error"),
            verdict(PassAnswers(failed=2, own_errors=2, reason="order_error", complete=True)),
            None,
        ),
        # ... nor while such lines were a part of what failed it (the reason names the
        # commonest cause alone: the probe recovered it, the next catch-up failed it again)
        (PassAnswers(failed=1, own_errors=1, reason="order_error"), verdict(MIXED), None),
        (PassAnswers(failed=1, lost=1), Verdict(False, "maintenance"), Verdict(True)),
        # ... but a "not found" while the account fails for a wave of them proves nothing
        (
            PassAnswers(failed=1, lost=1),
            verdict(PassAnswers(answered=1, failed=4, lost=4)),
            None,
        ),
        # no answer about the order (a line left out, an id never sent): still failing
        (PassAnswers(failed=1, reason="missing"), Verdict(False, "maintenance"), None),
        (PassAnswers(failed=1, reason="invalid_id"), Verdict(False, "http 500"), None),
    ],
    ids=["own-error", "every-own-error", "some-own-errors", "lost", "lost-wave", "missing", "id"],
)
def test_verdict_of_a_probe_whose_answers_say_nothing_as_a_whole(
    answers: PassAnswers, failure: Verdict | None, expected: Verdict | None
) -> None:
    assert failure is not None
    state = failed_by(failure)
    assert verdict(answers) is None
    assert probe_verdict(answers, state) == (expected or Verdict(False, failure.reason))


def test_what_failed_an_account_is_kept_until_it_recovers_whatever_fails_after() -> None:
    failure = verdict(MIXED)
    assert failure is not None and failure.own_word
    state = failed_by(failure)
    # A later failing pass says another reason: the fact stays.
    state, flip = next_health(
        state, [("pending_list", Verdict(False, "maintenance"))], now=NOW, interval_s=INTERVAL_S
    )
    assert (state.last_error, state.failed_on_own_word, flip) == ("maintenance", True, None)
    own_line = PassAnswers(failed=1, own_errors=1, reason="order_error")
    assert not probe_verdict(own_line, state).ok
    state, flip = next_health(
        state,
        [("checks", Verdict(True)), ("pending_list", Verdict(True))],
        now=NOW,
        interval_s=INTERVAL_S,
    )
    assert (flip, state.failed_on_own_word) == (RECOVERED, False)
    assert probe_verdict(own_line, state).ok


@pytest.mark.parametrize(
    ("answers", "probe"),
    [
        (PassAnswers(failed=2), True),  # a gateway's outage, or two troubled orders?
        (PassAnswers(answered=1, failed=2), False),
        (PassAnswers(failed=2, error="http 401"), False),  # the pass said it already
        (PassAnswers(failed=1, lost=1), False),  # CCV answered: it is up
        (PassAnswers(), False),
    ],
)
def test_a_partial_pass_without_answers_asks_the_probe(answers: PassAnswers, probe: bool) -> None:
    assert needs_probe(answers) is probe


@pytest.mark.parametrize(
    ("lost", "checked", "wave"),
    [
        (0, 0, False),
        (1, 1, False),
        (2, 2, False),
        (3, 3, True),
        (3, 4, True),
        (3, 6, False),
        (50, 100, False),
        (51, 100, True),
    ],
)
def test_lost_wave(lost: int, checked: int, wave: bool) -> None:
    assert is_lost_wave(lost, checked) is wave


def test_failed_once_and_recovered_once() -> None:
    state = SourceState("ccnow", "default")
    down = Verdict(False, "error_message: system down for maintenance")
    state, first = next_health(state, [("pending_list", down)], now=NOW, interval_s=INTERVAL_S)
    assert first is FAILED and state.failing and state.episode == 1
    state, second = next_health(
        state, [("pending_list", Verdict(False, "same"))], now=NOW + 60, interval_s=INTERVAL_S
    )
    assert second is None and state.failure_streak == 2
    state, rec = next_health(
        state, [("pending_list", Verdict(True))], now=NOW + 120, interval_s=INTERVAL_S
    )
    assert rec is RECOVERED and not state.failing and state.last_success == NOW + 120
    state, quiet = next_health(
        state, [("pending_list", Verdict(True))], now=NOW + 180, interval_s=INTERVAL_S
    )
    assert quiet is None
    state, again = next_health(
        state, [("checks", Verdict(False, "x"))], now=NOW + 240, interval_s=INTERVAL_S
    )
    assert again is FAILED and state.episode == 2  # a new failure episode


def test_a_pass_whose_check_and_probe_fail_counts_one_failure() -> None:
    # The backoff doubles per failed pass (a CCV probe tick asks an order and the probe).
    state = SourceState("ccv", "default")
    down = Verdict(False, "html page (http 200)")
    state, flip = next_health(
        state, [("checks", down), ("probe", down)], now=NOW, interval_s=INTERVAL_S
    )
    assert flip is FAILED and state.failure_streak == 1
    state, _ = next_health(
        state, [("checks", down), ("probe", down)], now=NOW + 10, interval_s=INTERVAL_S
    )
    assert state.failure_streak == 2 and state.failing_parts == {"checks", "probe"}


def test_pending_list_failing_while_queries_answer_does_not_flap() -> None:
    # Issue 10 item 6: the pending list fails, the due queries answer, poll after poll.
    state = SourceState("ccnow", "default")
    flips = []
    for n in range(5):
        now = NOW + 120 * n
        state, flip = next_health(
            state, [("pending_list", Verdict(False, "html page"))], now=now, interval_s=INTERVAL_S
        )
        flips.append(flip)
        state, flip = next_health(
            state, [("checks", Verdict(True))], now=now + 10, interval_s=INTERVAL_S
        )
        flips.append(flip)
    assert [f for f in flips if f is not None] == [FAILED]
    assert state.failing and state.last_success == NOW + 490
    state, flip = next_health(
        state, [("pending_list", Verdict(True))], now=NOW + 600, interval_s=INTERVAL_S
    )
    assert flip is RECOVERED


def test_queries_failing_while_the_pending_list_answers_does_not_flap() -> None:
    state = SourceState("ccnow", "default")
    state, flip = next_health(
        state,
        [("pending_list", Verdict(True)), ("checks", Verdict(False, "every check failed"))],
        now=NOW,
        interval_s=INTERVAL_S,
    )
    assert flip is FAILED
    state, flip = next_health(
        state, [("pending_list", Verdict(True))], now=NOW + 120, interval_s=INTERVAL_S
    )
    assert flip is None and state.failing
    state, flip = next_health(
        state, [("checks", Verdict(True))], now=NOW + 130, interval_s=INTERVAL_S
    )
    assert flip is RECOVERED


def test_a_probe_does_not_clear_failing_checks_but_checks_clear_a_failed_probe() -> None:
    state = SourceState("ccv", "default")
    state, _ = next_health(
        state, [("checks", Verdict(False, "every check failed"))], now=NOW, interval_s=INTERVAL_S
    )
    state, flip = next_health(
        state, [("probe", Verdict(True))], now=NOW + 300, interval_s=INTERVAL_S
    )
    assert flip is None and state.failing
    state, flip = next_health(
        state, [("checks", Verdict(True))], now=NOW + 310, interval_s=INTERVAL_S
    )
    assert flip is RECOVERED
    state, flip = next_health(
        state, [("probe", Verdict(False, "timeout"))], now=NOW + 900, interval_s=INTERVAL_S
    )
    assert flip is FAILED
    state, flip = next_health(
        state, [("checks", Verdict(True))], now=NOW + 910, interval_s=INTERVAL_S
    )
    assert flip is RECOVERED


def test_a_pass_flips_at_most_once() -> None:
    state, _ = next_health(
        SourceState("ccnow", "default"),
        [("pending_list", Verdict(False, "x"))],
        now=NOW,
        interval_s=INTERVAL_S,
    )
    # The list answers again, but this pass's queries all failed: still failing, no event pair.
    state, flip = next_health(
        state,
        [("pending_list", Verdict(True)), ("checks", Verdict(False, "every check failed"))],
        now=NOW + 60,
        interval_s=INTERVAL_S,
    )
    assert flip is None and state.failing_parts == {"checks"}


def test_a_stale_pass_flips_nothing_back_and_counts_no_probe() -> None:
    """A pass begun before the pass of the account's last flip (`stale`) settles as it ends:
    its answers are older than that flip's, so they flip nothing back, and its failure while
    failing is no probe; what does not flip applies as before."""
    down = Verdict(False, "every check failed (timeout)")
    failed, _ = next_health(
        SourceState("ccv", "default"), [("checks", down)], now=NOW, interval_s=INTERVAL_S
    )
    state, flip = next_health(
        failed, [("checks", Verdict(True))], now=NOW + 1, interval_s=INTERVAL_S, stale=True
    )
    assert (state, flip) == (failed, None)
    later = NOW + 100 * INTERVAL_S  # the backoff over: a fresh failure would be a probe
    state, flip = next_health(
        failed, [("checks", down)], now=later, interval_s=INTERVAL_S, stale=True
    )
    assert flip is None and state.failure_streak == failed.failure_streak == 1
    state, flip = next_health(failed, [("checks", down)], now=later, interval_s=INTERVAL_S)
    assert flip is None and state.failure_streak == 2
    answering = SourceState("ccv", "default")
    state, flip = next_health(
        answering, [("checks", down)], now=NOW, interval_s=INTERVAL_S, stale=True
    )
    assert (state, flip) == (answering, None)
    state, flip = next_health(
        answering, [("checks", Verdict(True))], now=NOW, interval_s=INTERVAL_S, stale=True
    )
    assert flip is None and state.last_success == NOW
    # A part cleared while another still fails the account: no flip, so it applies.
    both, _ = next_health(
        SourceState("ccnow", "default"),
        [("pending_list", Verdict(False, "x")), ("checks", down)],
        now=NOW,
        interval_s=INTERVAL_S,
    )
    state, flip = next_health(
        both, [("pending_list", Verdict(True))], now=NOW + 1, interval_s=INTERVAL_S, stale=True
    )
    assert flip is None and state.failing_parts == {"checks"}


def test_health_events_name_the_reason_and_keep_their_ids() -> None:
    before = SourceState("ccv", "default")
    failed, flip = next_health(
        before, [("checks", Verdict(False, "http 401"))], now=NOW, interval_s=INTERVAL_S
    )
    assert flip is FAILED
    event = health_event(before, failed, flip, now=NOW, via="poll", store_id=STORE)
    assert event.type is FAILED and event.severity == "error"
    assert event.data["reason"] == "http 401"
    again = health_event(before, failed, flip, now=NOW, via="poll", store_id=STORE)
    assert again.id == event.id  # made from what happened, nothing random
    # A store restored from a backup counts the same episode again: a failure at another time
    # is another flip and never gets the id of the first.
    later = health_event(before, failed, flip, now=NOW + 5, via="poll", store_id=STORE)
    assert later.id != event.id
    back, flip = next_health(
        failed, [("checks", Verdict(True))], now=NOW + 60, interval_s=INTERVAL_S
    )
    assert flip is RECOVERED
    recovered = health_event(failed, back, flip, now=NOW + 60, via="poll", store_id=STORE)
    assert recovered.severity == "info" and recovered.data["reason"] == "http 401"
    assert recovered.id != event.id
    # The reason is what the event says, not what it is: another wording, the same flip.
    worded = replace(failed, last_error="every check failed (http_302)")
    assert health_event(before, worded, FAILED, now=NOW, via="poll", store_id=STORE).id == event.id


@pytest.mark.parametrize(
    "parts", [frozenset(), frozenset({"checks"}), frozenset({"pending_list", "probe"})]
)
def test_failing_parts_survive_the_store(parts: frozenset[str]) -> None:
    assert mask_parts(parts_mask(parts)) == parts  # type: ignore[arg-type]


def test_a_store_of_an_older_version_reads_as_failing_checks() -> None:
    assert mask_parts(1) == {"checks"}


def test_a_rest_is_news_however_old_the_pass() -> None:
    ok: tuple[Part, Verdict] = ("checks", Verdict(True))
    down: tuple[Part, Verdict] = ("checks", Verdict(False, "http 500"))
    rest: tuple[Part, Verdict] = ("checks", Verdict(False, "http 429: resting"))
    assert rest_is_news([ok], stale=True, rest=None) == ([ok], True)
    assert rest_is_news([ok], stale=True, rest="http 429: resting") == ([rest], False)
    assert rest_is_news([ok, down], stale=True, rest="http 429: resting") == ([down], False)
    assert rest_is_news([ok], stale=False, rest="http 429: resting") == ([ok, rest], False)
    assert rest_is_news([down], stale=False, rest="http 429: resting") == ([down], False)


def test_a_rests_failure_is_of_the_pass_s_own_part_which_its_next_answer_clears() -> None:
    # A CCNow poll of the pending list alone (no order to query) records another request's
    # rest: its failure is the list's, which the list's next answer ends; the checks' would
    # stay failing with no check to clear it.
    listed: tuple[Part, Verdict] = ("pending_list", Verdict(True))
    said, stale = rest_is_news([listed], stale=False, rest="http 429: resting")
    assert said == [listed, ("pending_list", Verdict(False, "http 429: resting"))] and not stale
    state = SourceState(source="ccnow", account="default")
    failed, flip = next_health(state, said, now=NOW, interval_s=INTERVAL_S)
    assert flip is EventType.SOURCE_FAILED
    _, flip = next_health(failed, [listed], now=NOW + 700, interval_s=INTERVAL_S)
    assert flip is EventType.SOURCE_RECOVERED
