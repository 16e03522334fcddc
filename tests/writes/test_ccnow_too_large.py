"""A post of several orders turned away by a bound on its size (413, a proxy's; 414 alike) is
sent again in halves, down to one order; one order's post turned away so is refused with why.
It stayed queued for ever, the same post turned away each time, one warning each. A fake CCNow
on 127.0.0.1 that answers 413 to a post whose body is over its bound, as a proxy before it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import read_events, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import ARGS, A, B, C, ccnow, commands

D = "399-10-1161"
ORDERS = [A, B, C, D]


async def test_a_post_too_large_is_sent_again_in_halves(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = dict.fromkeys(ORDERS, "pending")
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    # Two orders' post fits; four orders' does not.
    fake_ccnow.max_post_bytes = 400
    result = await ccnow(cfg, "add-tracking", *ORDERS, *ARGS["add-tracking"])
    assert result.code == 0, result.stdout + result.stderr
    assert fake_ccnow.batch_sizes == [4, 2, 2]
    assert sorted(o for o, _, _ in fake_ccnow.actions) == ORDERS
    assert [state for _, state, _ in commands(tmp_path)] == ["succeeded"] * 4
    assert "sent 4, done 4" in result.stderr


async def test_one_orders_post_too_large_is_refused_with_why(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = dict.fromkeys(ORDERS, "pending")
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.max_post_bytes = 100  # no order's post fits
    result = await ccnow(cfg, "adjust", *ORDERS, *ARGS["adjust"])
    assert result.code == 65, result.stdout + result.stderr
    assert fake_ccnow.batch_sizes == [4, 2, 1, 1, 2, 1, 1]
    assert not fake_ccnow.actions
    why = (
        "http 413: the post of this order alone was turned away as too large (its body: a "
        "bound of CCNow's web server or a proxy before it); nothing ran"
    )
    assert commands(tmp_path) == [(o, "refused", why) for o in ORDERS]
    refused = [e for e in read_events(tmp_path) if e["type"] == "order.action_refused"]
    assert len(refused) == 4
    assert "sent 4, done 0, refused 4, uncertain 0, queued 0" in result.stderr
    # Not queued: a later run posts nothing.
    again = await ccnow(cfg, "adjust", *ORDERS, *ARGS["adjust"])
    assert again.code == 65
    assert len(fake_ccnow.batch_sizes) == 7


async def test_a_ship_answered_414_alone_is_refused_not_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [Reply(414, "URI Too Long")]
    result = await ccnow(cfg, "ship", A, *ARGS["ship"])
    assert result.code == 65, result.stdout + result.stderr
    [(_, state, answer)] = commands(tmp_path)
    assert state == "refused"
    assert answer is not None and answer.startswith("http 414: ") and "(its url: " in answer


async def test_an_adjust_post_answered_413_in_ccnows_words_is_never_halved(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # CCNow's `message` in a 413: its program ran the post (a status no bound before it gave),
    # and may have applied each discount: halved and posted again, each would be given twice.
    fake_ccnow.orders = dict.fromkeys(ORDERS, "pending")
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.after_applying = [Reply(413, "message discounts recorded\n")]
    result = await ccnow(cfg, "adjust", *ORDERS, *ARGS["adjust"])
    assert result.code == 75, result.stdout + result.stderr
    assert fake_ccnow.batch_sizes == [4]
    assert [state for _, state, _ in commands(tmp_path)] == ["uncertain"] * 4


async def test_a_413_in_ccnows_error_lines_is_its_refusal_not_a_size_bound(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # CCNow's own `error_message` lines alone: its program read the post and refused it, as
    # in a 200 (nothing applied). It was halved as a proxy's bound, the halves posted and all
    # four discounts given, the one CCNow refused among them.
    fake_ccnow.orders = dict.fromkeys(ORDERS, "pending")
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    line = "error_message x_amount_3 exceeds order total"
    fake_ccnow.script = [Reply(413, f"{line}\n")]
    result = await ccnow(cfg, "adjust", *ORDERS, *ARGS["adjust"])
    assert result.code == 65, result.stdout + result.stderr
    # Not halved: the others, refused with it and for it alone, are sent again at once
    # without it, as after such a 200, each discount given once.
    assert fake_ccnow.batch_sizes == [4, 3]
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(o, "adjust") for o in (A, B, D)]
    states = {o: (state, answer) for o, state, answer in commands(tmp_path)}
    assert states[C] == ("refused", line)
    assert {states[o][0] for o in (A, B, D)} == {"succeeded"}


async def test_one_orders_post_answered_413_saying_ccnow_is_down_stays_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Read as a size bound's, one order's post was refused for good as too large.
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [Reply(413, "error_message system down for maintenance\n")]
    result = await ccnow(cfg, "ship", A, *ARGS["ship"])
    assert result.code == 75, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "queued", "error_message system down for maintenance")]
    assert not [e for e in read_events(tmp_path) if e["type"] == "order.action_refused"]
