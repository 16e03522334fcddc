"""CCNow actions whose post may have been run though its answer says otherwise, against a fake
CCNow on 127.0.0.1 that applies the action and answers something else: a ship refused as not
pending after an attempt whose answer was lost was taken by it; a status other than 200 that
does not say the post was not run leaves a discount uncertain, never posted twice; an order's
line without a status word, or a `message` CCNow does not document, settles nothing. And the
API refuses one key for two orders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import free_port, read_events, write_config
from tests.fake_providers import FakeCCNow, Reply, cut_off, html_page
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import (
    A,
    ccnow,
    commands,
    daemon_with_api,
    make_due,
    query,
    tracked,
)


def actions(fake: FakeCCNow) -> list[str]:
    """The actions posted (query posts left out), in order."""
    posted = [r.form.get("x_action_1", "query") for r in fake.requests]
    return [a for a in posted if a != "query"]


def snapshot(tmp_path: Path, order_id: str) -> str:
    [(status,)] = query(tmp_path, "SELECT status FROM orders WHERE order_id = ?", order_id)
    return str(status)


# The first attempt of the post: CCNow ran it, its answer was lost on the way (a gateway's
# status, a link cut mid-answer, a 503 that still carries the order's line).
LOST_FIRST = {
    "gateway-502": html_page(502),
    "gateway-504": Reply(504, "Gateway Time-out"),
    "cloudflare-524": Reply(524, "A timeout occurred"),
    "cut": cut_off(f"{A} mark_sh"),
    "503-with-its-line": Reply(503, f"{A} mark_shipped\n"),
}


@pytest.mark.parametrize("lost", list(LOST_FIRST.values()), ids=list(LOST_FIRST))
async def test_a_ship_refused_as_not_pending_by_the_retry_of_a_post_ccnow_ran_is_done(
    tmp_path: Path, fake_ccnow: FakeCCNow, lost: Reply
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.after_applying = [lost]
    result = await ccnow(cfg, "ship", A)
    # The post's own retry was answered `error_message order not pending`: its first attempt
    # took, which the order's status shows.
    assert result.code == 0, result.stdout + result.stderr
    assert actions(fake_ccnow) == ["ship", "ship"]
    [(_, state, answer)] = commands(tmp_path)
    assert state == "succeeded" and answer == "mark_shipped (taken by an earlier attempt)"
    assert snapshot(tmp_path, A) == "mark_shipped"
    events = read_events(tmp_path)
    assert [e["type"] for e in events if e["type"].startswith("order.action")] == [
        "order.action_succeeded"
    ]
    [changed] = [e["data"] for e in events if e["type"] == "order.status_changed"]
    assert (changed["previous_status"], changed["status"], changed["via"]) == (
        "pending",
        "mark_shipped",
        "action",
    )


async def test_a_ship_re_sent_after_lost_posts_and_refused_by_field_name_is_done(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    # Both attempts of the first post go out and their answers are lost: the first one ran.
    fake_ccnow.after_applying = [html_page(502), html_page(502)]
    first = await ccnow(cfg, "ship", A)
    assert first.code == 75, first.stdout + first.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["queued"]
    assert fake_ccnow.orders[A] == "mark_shipped"
    # The re-send is refused as a whole, in a line naming the order's field.
    fake_ccnow.script = [Reply(200, f"error_message x_orderid_1 {A} is not pending\n")]
    await make_due(tmp_path)
    again = await ccnow(cfg, "ship", A)
    assert again.code == 0, again.stdout + again.stderr
    [(_, state, answer)] = commands(tmp_path)
    assert state == "succeeded" and answer == "mark_shipped (taken by an earlier attempt)"
    assert snapshot(tmp_path, A) == "mark_shipped"
    assert not [e for e in read_events(tmp_path) if e["type"] == "order.action_refused"]


async def test_a_ship_refused_by_field_name_that_no_post_may_have_reached_is_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The order left pending elsewhere; this command never reached CCNow before: refused.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.orders[A] = "canceled"
    fake_ccnow.script = [Reply(200, f"error_message x_orderid_1 {A} is not pending\n")]
    result = await ccnow(cfg, "ship", A)
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "refused", f"error_message x_orderid_1 {A} is not pending")]


# Statuses after which CCNow may have run the post: only those saying it did not are re-sent.
MAYBE_RUN = {
    "cloudflare-524": Reply(524, "A timeout occurred"),
    "cloudflare-520": Reply(520, "Web server is returning an unknown error"),
    "201-with-its-line": Reply(201, f"{A} pending\n"),
    "202-with-its-line": Reply(202, f"{A} pending\n"),
    "503-with-its-line": Reply(503, f"{A} pending\n"),
    "503-ccnow-words": Reply(503, "error_message Discount exceeds order total\n"),
    "503-message-beside-down": Reply(
        503, "message discount recorded\nerror_message mail server is down\n"
    ),
    # A 503 without CCNow's words: a balancer's before CCNow, or a proxy's after CCNow got the
    # post and was slow (Varnish), a Retry-After or not. Posted again, the discount may be
    # given twice: a person decides (a ship's or tracking's is sent again,
    # test_ccnow_retry_after_queued.py).
    "503-plain": Reply(503, "Service Unavailable"),
    "503-varnish": Reply(
        503, "<html><h1>Error 503 Backend fetch failed</h1></html>", headers={"Retry-After": "5"}
    ),
    "503-empty-retry-after": Reply(503, "", headers={"Retry-After": "120"}),
    "404-with-its-line": Reply(404, f"{A} pending\n"),
    # A size bound's status with CCNow's words saying what it did: CCNow's program ran it,
    # no bound before it turned it away (test_ccnow_too_large.py).
    "413-ccnow-message": Reply(413, "message discount recorded\n"),
    "414-ccnow-message": Reply(414, "message adjustments applied\n"),
    "400": Reply(400, "Bad Request"),
    # "Done, see there" (RFC 9110 15.4.4), or a login wall's: not known which.
    "302": Reply(302, "", headers={"Location": "https://www.ccnow.com/login"}),
    "303": Reply(303, "", headers={"Location": "https://www.ccnow.com/orders"}),
}


@pytest.mark.parametrize("reply", list(MAYBE_RUN.values()), ids=list(MAYBE_RUN))
async def test_an_adjust_answered_a_status_it_may_have_run_before_is_never_posted_again(
    tmp_path: Path, fake_ccnow: FakeCCNow, reply: Reply
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.after_applying = [reply]
    first = await ccnow(cfg, "adjust", A, "--amount", "7.25")
    assert first.code == 75, first.stdout + first.stderr
    assert commands(tmp_path) == [(A, "uncertain", f"http_{reply.status}")]
    again = await ccnow(cfg, "adjust", A, "--amount", "7.25")
    assert again.code == 75
    assert actions(fake_ccnow) == ["adjust"]
    uncertain = [e for e in read_events(tmp_path) if e["type"] == "order.action_uncertain"]
    assert len(uncertain) == 1


# Statuses that say the post was not run: queued, and sent again.
NOT_RUN = {
    "301": Reply(301, "", headers={"Location": "https://www.ccnow.com/cgi-local/new.cgi"}),
    "307": Reply(307, "", headers={"Location": "https://www.ccnow.com/cgi-local/new.cgi"}),
    "403": Reply(403, "Forbidden"),
    "405": Reply(405, "Method Not Allowed"),
    "408": Reply(408, "Request Timeout"),
    # (A 413 or 414 turns the same post away each time: test_ccnow_too_large.py.)
    "431": Reply(431, "Request Header Fields Too Large"),
    # CCNow's own words saying it is down: it ran nothing.
    "503-down": Reply(503, "error_message system down for maintenance\n"),
}


@pytest.mark.parametrize("reply", list(NOT_RUN.values()), ids=list(NOT_RUN))
async def test_an_adjust_turned_away_by_its_status_is_queued_and_sent_later(
    tmp_path: Path, fake_ccnow: FakeCCNow, reply: Reply
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [reply]
    first = await ccnow(cfg, "adjust", A, "--amount", "5")
    assert first.code == 75, first.stdout + first.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["queued"]
    await make_due(tmp_path)
    again = await ccnow(cfg, "adjust", A, "--amount", "5")
    assert again.code == 0, again.stdout + again.stderr
    # Posted twice, taken once: the first post was turned away.
    assert actions(fake_ccnow) == ["adjust", "adjust"]
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust")]


# An order's line whose status has no word to read: CCNow's answer, but not what it did.
UNREADABLE = ["remise appliquée", "mark_shipped.", "pending (awaiting)"]


@pytest.mark.parametrize("said", UNREADABLE)
async def test_an_order_line_without_a_readable_status_settles_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow, said: str
) -> None:
    fake_ccnow.orders = {A: "pending", "397-10-1159": "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, "397-10-1159")
    fake_ccnow.actions_answer = [f"{A} {said}"]
    adjusted = await ccnow(cfg, "adjust", A, "--amount", "3")
    # The discount may have been taken: a person decides, it is not posted again.
    assert adjusted.code == 75, adjusted.stdout + adjusted.stderr
    [(_, state, answer)] = commands(tmp_path)
    assert (state, answer) == ("uncertain", "no status word to read in this order's answer line")
    # A ship is settled by the order's status, read at once.
    fake_ccnow.actions_answer = [f"397-10-1159 {said}"]
    shipped = await ccnow(cfg, "ship", "397-10-1159")
    assert shipped.code == 0, shipped.stdout + shipped.stderr
    assert commands(tmp_path)[1][1:] == ("succeeded", "mark_shipped (the order's status)")
    assert snapshot(tmp_path, "397-10-1159") == "mark_shipped"
    assert not [e for e in read_events(tmp_path) if e["type"] == "order.action_refused"]
    assert actions(fake_ccnow) == ["adjust", "ship"]


@pytest.mark.parametrize("message", ["message discount recorded", "message account_locked"])
async def test_an_unknown_message_answer_leaves_an_adjust_uncertain_and_a_ship_read(
    tmp_path: Path, fake_ccnow: FakeCCNow, message: str
) -> None:
    fake_ccnow.orders = {A: "pending", "397-10-1159": "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, "397-10-1159")
    fake_ccnow.actions_answer = [message]
    adjusted = await ccnow(cfg, "adjust", A, "--amount", "3")
    # CCNow's answer, naming no order: the discount may have been taken, never posted again.
    assert adjusted.code == 75, adjusted.stdout + adjusted.stderr
    said = f"no single answer line for this order: {message}"
    assert commands(tmp_path) == [(A, "uncertain", said)]
    again = await ccnow(cfg, "adjust", A, "--amount", "3")
    assert again.code == 75
    fake_ccnow.actions_answer = [message]
    shipped = await ccnow(cfg, "ship", "397-10-1159")
    assert shipped.code == 0, shipped.stdout + shipped.stderr
    assert commands(tmp_path)[1][1:] == ("succeeded", "mark_shipped (the order's status)")
    assert actions(fake_ccnow) == ["adjust", "ship"]


async def test_a_long_message_answer_is_kept_cut_as_one_line_is(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Every line was kept: 2,000 `message` lines made an answer (and an event, a log line) of
    # hundreds of kilobytes.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"message note {n} of the post" for n in range(2000)]
    adjusted = await ccnow(cfg, "adjust", A, "--amount", "3")
    assert adjusted.code == 75, adjusted.stdout[-500:] + adjusted.stderr[-500:]
    [(_, state, answer)] = commands(tmp_path)
    assert state == "uncertain" and answer is not None
    assert answer.startswith("no single answer line for this order: ")
    assert len(answer) < 300 and answer.endswith("\u2026")
    [event] = [e for e in read_events(tmp_path) if e["type"] == "order.action_uncertain"]
    assert len(json.dumps(event)) < 2000


async def test_the_api_refuses_one_key_given_to_two_orders(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", "397-10-1159": "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    doc = {"action": "ship", "order_ids": [A, "397-10-1159"], "keys": ["k", "k"]}
    async with daemon_with_api(cfg, port) as http:
        async with http.post(base, json=doc) as r:
            body = await r.json()
            # Not one command recorded for the two, the second order silently dropped.
            assert (r.status, body.get("field")) == (422, "keys"), body
        async with http.post(base, json={**doc, "keys": ["k1", "k2"]}) as r:
            assert r.status == 202, await r.text()
    assert [(o, s) for o, s, _ in commands(tmp_path)] == [
        (A, "succeeded"),
        ("397-10-1159", "succeeded"),
    ]
