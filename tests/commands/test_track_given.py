"""What `track` and `untrack` are given: a track file's first line is a header only when it is
no order (the log line names the one skipped), a header row below it is refused, one order
under two references is refused, the reference an order keeps as its alias is the same
reference again, a reference of white space alone is refused, and `untrack` of a malformed id
or a store not created yet changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Result, call_cli, cli_env, read_events, write_config
from tests.fake_providers import FakeCCNow, FakeCCV

ORDER = "0c1d0000-0000-4000-8000-000000000001"


async def followed(cfg: Path) -> set[tuple[str, str | None]]:
    result = await call_cli("--config", cfg, "orders", "--json")
    assert result.code == 0, result.stderr
    return {(r["order_id"], r["external_reference"]) for r in json.loads(result.stdout)}


def logged(result: Result, message: str) -> dict[str, object]:
    [line] = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if line.startswith("{") and json.loads(line)["message"] == message
    ]
    assert isinstance(line, dict)
    return line


async def test_ids_whose_letters_spell_a_header_are_orders_and_only_a_first_line_is_one(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    # Each was taken for a header row, and every line up to the first order with it: exit 0,
    # nothing followed.
    ids = tmp_path / "ids.csv"
    ids.write_text("ID-1001,INV-1\nID-1002,INV-2\norder1234\nOrder-7\nnumber1\nORDERNR_5\n")
    result = await call_cli("--config", cfg, "track", "ccv", "--from-file", ids)
    assert result.code == 0, result.stderr
    assert logged(result, "orders.tracked")["given"] == 6
    headed = tmp_path / "headed.csv"  # a header row above them is still one
    headed.write_text("# exported\n\nOrder ID,Reference\nA1,ref-a1\n")
    assert (await call_cli("--config", cfg, "track", "ccv", "--from-file", headed)).code == 0
    assert await followed(cfg) == {
        ("ID-1001", "INV-1"),
        ("ID-1002", "INV-2"),
        ("order1234", None),
        ("Order-7", None),
        ("number1", None),
        ("ORDERNR_5", None),
        ("A1", "ref-a1"),
    }

    # CCNow lines pasted with a word in front: malformed ids, refused naming the line.
    pasted = tmp_path / "pasted.csv"
    pasted.write_text("Order 396-10-1199\nOrder 396-10-1200\n")
    result = await call_cli("--config", cfg, "track", "ccnow", "--from-file", pasted)
    assert result.code == 65, result.stderr
    assert f"{pasted}:1: not a CCNow order id" in result.stderr
    # A header below the first order is a malformed id, not a second header.
    for source, text in [("ccnow", "396101142\nOrder ID\n"), ("ccv", "B1\nOrder No.,Ref\n")]:
        late = tmp_path / f"late-{source}.csv"
        late.write_text(text)
        result = await call_cli("--config", cfg, "track", source, "--from-file", late)
        assert result.code == 65, result.stderr
        assert f"{late}:2: " in result.stderr
    assert len(await followed(cfg)) == 7  # nothing of a refused file


async def test_a_header_row_below_the_first_line_is_refused_and_tracks_nothing(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    # Two exports joined (`cat a.csv b.csv`): `order_number` and `OrderID` were tracked as
    # CCV orders, exit 0.
    joined = tmp_path / "joined.csv"
    joined.write_text("A3,INV-3\norder_number,INV-4\nOrderID\n")
    result = await call_cli("--config", cfg, "track", "ccv", "--from-file", joined)
    assert result.code == 65, result.stderr
    assert result.stderr.strip() == (
        f"reconciler: error: {joined}:2: a header row below the first line: 'order_number'"
    )
    assert await followed(cfg) == set()


async def test_the_header_row_skipped_is_named_in_the_log_line(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    headed = tmp_path / "headed.csv"
    # A CCV id made of header words on line 1 is taken for a header: the log line says so.
    for header in ("Order UUID", "order_number", "uuid"):
        headed.write_text(f"{header},Reference\nA1,ref-a1\n")
        result = await call_cli("--config", cfg, "track", "ccv", "--from-file", headed)
        assert result.code == 0, result.stderr
        line = logged(result, "orders.tracked")
        assert (line["header_skipped"], line["given"]) == (header, 1)
    headed.write_text("order" + "_" * 300 + "\nA1\n")  # cut, as a refusal quotes input
    long = logged(
        await call_cli("--config", cfg, "track", "ccv", "--from-file", headed), "orders.tracked"
    )
    assert long["header_skipped"] == "order" + "_" * 95 + "\u2026"
    # One holding a secret of the config is named by a mask alone.
    signs = "!@#$%^&*()+"
    headed.write_text(f"ID {signs}\nA2\n")
    masked = await call_cli(
        "--config",
        cfg,
        "track",
        "ccv",
        "--from-file",
        headed,
        env=cli_env(RECONCILER_CCV_API_KEY=signs),
    )
    assert logged(masked, "orders.tracked")["header_skipped"] == "***"
    assert signs not in masked.stderr
    assert await followed(cfg) == {("A1", "ref-a1"), ("A2", None)}


async def test_one_file_naming_an_order_under_two_references_tracks_nothing(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    both = tmp_path / "both.csv"
    # The last reference was taken in silence, and the first one's notifications lost.
    both.write_text("o1,R1\no9,R9\no1\no9,R10\n")
    result = await call_cli("--config", cfg, "track", "ccv", "--from-file", both)
    assert result.code == 65, result.stderr
    assert (
        result.stderr.strip()
        == f"reconciler: error: {both}:4: order 'o9' is given under reference 'R10' here and "
        "'R9' on line 2: nothing tracked"
    )
    assert await followed(cfg) == set()
    both.write_text("o1,R1\no9,R9\no1\no9,R9\n")  # the same one again is one order
    assert (await call_cli("--config", cfg, "track", "ccv", "--from-file", both)).code == 0
    assert await followed(cfg) == {("o1", "R1"), ("o9", "R9")}


async def test_a_files_reference_is_judged_as_ref_judges_it(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # One rule for a reference, from `--ref` or a file's line: white space alone (or a control
    # character) is refused, white space at an end is taken as written (an older release's
    # submit stored so is settled by it); the spaces just after the comma are none of it.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    lines = tmp_path / "lines.csv"
    refused = {
        'D2,"  "': "must not be white space alone: '  '",
        "D3,\t": "must not hold control or invisible characters: '\\t'",
        'D6,"R6\t"': "must not hold control or invisible characters: 'R6\\t'",
        'D7," ",': "must not be white space alone: ' '",
    }
    for line, problem in refused.items():
        lines.write_bytes(f"\ufeffOrder ID,Reference\r\nD1,R1\r\n\r\n{line}\r\n".encode())
        result = await call_cli("--config", cfg, "track", "ccv", "--from-file", lines)
        assert result.code == 65, (line, result.stderr)
        assert result.stderr.strip() == (
            f"reconciler: error: {lines}:4: an external reference {problem}"
        ), line
        ref = line.split(",")[1].strip('"')
        given = await call_cli("--config", cfg, "track", "ccv", "D1", "--ref", ref)
        assert given.code == 65, (line, given.stderr)
        assert given.stderr.strip() == f"reconciler: error: --ref: an external reference {problem}"
    assert await followed(cfg) == set()
    # White space around the id, after a comma, a header's and an empty column's are none of a
    # reference's: a BOM, CRLF line ends and blank lines as before. `D4,` and spaces was
    # refused (65) where `D4,  ,` was no reference.
    lines.write_bytes(
        b"\xef\xbb\xbfOrder ID, Reference \r\n D1 , R1\r\n\r\n\tD2\t\r\nD3,\r\nD4,   \r\nD5,  ,\r\n"
    )
    result = await call_cli("--config", cfg, "track", "ccv", "--from-file", lines)
    assert result.code == 0, result.stderr
    assert await followed(cfg) == {
        ("D1", "R1"),
        ("D2", None),
        ("D3", None),
        ("D4", None),
        ("D5", None),
    }
    # White space at a reference's end is kept, as `--ref 'R8 '` keeps it (it was 65).
    lines.write_text("D8, R8 \n")
    result = await call_cli("--config", cfg, "track", "ccv", "--from-file", lines)
    assert result.code == 0, result.stderr
    assert (await call_cli("--config", cfg, "track", "ccv", "D9", "--ref", "R9 ")).code == 0
    assert {r for r in await followed(cfg) if r[0] in ("D8", "D9")} == {
        ("D8", "R8 "),
        ("D9", "R9 "),
    }


async def test_white_space_after_a_closing_quote_is_no_part_of_a_line(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # Loaded before the line was given to the CSV reader unstripped; then 65, `',' expected
    # after '"'`. A quote inside a field and the white space in it stay as they are.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    lines = tmp_path / "quoted.csv"
    lines.write_text(
        '"Order ID","Reference" \n"o1","R1" \n"o2"\t\n"o3" ,"R3"\t\no4,"R ""4"" , x"\n'
    )
    result = await call_cli("--config", cfg, "track", "ccv", "--from-file", lines)
    assert result.code == 0, result.stderr
    assert logged(result, "orders.tracked")["header_skipped"] == "Order ID"
    assert await followed(cfg) == {
        ("o1", "R1"),
        ("o2", None),
        ("o3", "R3"),
        ("o4", 'R "4" , x'),
    }
    # Anything else after a closing quote is still no CSV line.
    lines.write_text('"o5" x,R5\n')
    result = await call_cli("--config", cfg, "track", "ccv", "--from-file", lines)
    assert result.code == 65, result.stderr
    assert f"{lines}:1: not a CSV line: ',' expected after '\"'" in result.stderr


async def test_tracking_again_under_the_reference_ccv_answered_another_to_changes_nothing(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    fake_ccv.orders = {ORDER: "Processing"}
    fake_ccv.refs = {ORDER: "INV-AT-CCV"}
    track = ("--config", cfg, "track", "ccv", ORDER, "--ref", "INV-WRONG")
    assert (await call_cli(*track)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    assert await followed(cfg) == {(ORDER, "INV-AT-CCV")}  # INV-WRONG kept as its alias

    # A nightly import of the same line: no move to another reference, nothing changes.
    again = await call_cli(*track)
    assert again.code == 0, again.stderr
    assert logged(again, "orders.tracked")["new_or_updated"] == 0
    assert "order.reference_relinked" not in again.stderr
    assert await followed(cfg) == {(ORDER, "INV-AT-CCV")}
    # Any other reference is still a move, which --relink makes (back to the alias, too).
    other = await call_cli("--config", cfg, "track", "ccv", ORDER, "--ref", "INV-OTHER")
    assert other.code == 65 and "under reference INV-AT-CCV, not INV-OTHER" in other.stderr
    relinked = await call_cli(*track, "--relink")
    assert relinked.code == 0, relinked.stderr
    assert logged(relinked, "order.reference_relinked")["previous_reference"] == "INV-AT-CCV"
    assert await followed(cfg) == {(ORDER, "INV-WRONG")}


async def test_new_or_updated_counts_only_the_orders_a_track_changed(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    first = await call_cli("--config", cfg, "track", "ccv", "a1", "a2")
    assert logged(first, "orders.tracked")["new_or_updated"] == 2
    lines = tmp_path / "lines.csv"
    lines.write_text("a1\na2,R2\na3\n")  # a1 as it was; a2 given a reference; a3 new
    second = await call_cli("--config", cfg, "track", "ccv", "--from-file", lines)
    assert logged(second, "orders.tracked") | {"time": None} == {
        "time": None,
        "level": "info",
        "logger": "reconciler.cli",
        "message": "orders.tracked",
        "source": "ccv",
        "account": "default",
        "given": 3,
        "new_or_updated": 2,
    }
    third = await call_cli("--config", cfg, "track", "ccv", "--from-file", lines)
    assert logged(third, "orders.tracked")["new_or_updated"] == 0


async def test_a_reference_of_white_space_alone_is_refused(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    for blank in (" ", "   "):
        result = await call_cli("--config", cfg, "track", "ccv", "X1", "--ref", blank)
        assert result.code == 65, result.stderr
        assert result.stderr.strip() == (
            "reconciler: error: --ref: an external reference must not be white space alone: "
            f"{blank!r}"
        )
    assert await followed(cfg) == set()
    # One stored with white space at an end by an older release is still tracked as stored.
    assert (await call_cli("--config", cfg, "track", "ccv", "X1", "--ref", "R1 ")).code == 0


async def test_untrack_of_a_malformed_id_untracks_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", "396101142", "396101143")).code == 0
    result = await call_cli("--config", cfg, "untrack", "ccnow", "396101142", "12345")
    assert result.code == 65, result.stderr
    assert "not a CCNow order id (nine digits, hyphens optional): '12345'" in result.stderr
    assert await followed(cfg) == {("396-10-1142", None), ("396-10-1143", None)}
    assert read_events(tmp_path) == []


async def test_untrack_of_a_store_not_created_yet_creates_nothing(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    store = tmp_path / "not-yet" / "reconciler.db"
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "reconciler.db"), str(store)))
    result = await call_cli("--config", cfg, "untrack", "ccv", "X1")
    assert result.code == 0, result.stderr
    assert logged(result, "orders.untracked")["removed"] == 0
    assert not store.parent.exists()
    (tmp_path / "not-yet").mkdir()
    assert (await call_cli("--config", cfg, "untrack", "ccv", "X1")).code == 0
    assert list(store.parent.iterdir()) == []
