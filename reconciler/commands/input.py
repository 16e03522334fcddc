"""Reading what a command is given: JSON documents, track files, external references."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple

from .. import strict_json
from ..exits import DataError
from ..model import InvalidOrderId, Source, clipped, normalize_order_id, reference_problem
from ..redact import GIVEN_SECRET, MASK, SecretForms, holds_secret
from ..stdio import NotReadHere, read_bounded, read_stdin_bounded

MAX_JSON_INPUT_BYTES = 16 * 1024 * 1024
# Some million `ID,REF` lines; /dev/zero or `yes |` were read until memory ran out.
MAX_TRACK_FILE_BYTES = 64 * 1024 * 1024


def read_json(name: str) -> object:
    """Read one JSON document from a file or a pipe of at most 16 MiB, or stdin ('-');
    malformed input, or a file that is no file to read (a device, a FIFO nothing writes to), is
    a DataError naming it."""
    try:
        if name == "-":
            raw = read_stdin_bounded(MAX_JSON_INPUT_BYTES)
        else:
            # Bounded, not open(): a FIFO nothing writes to kept `ccv check-pricing` for ever.
            raw = read_bounded(Path(name), MAX_JSON_INPUT_BYTES, pipes=True)
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None
    except NotReadHere as exc:
        raise DataError(f"{name}: {exc}") from None
    try:
        return strict_json.given(raw)
    except (strict_json.NotExact, strict_json.RepeatedKey) as exc:
        raise DataError(f"{name}: {exc}") from None
    except strict_json.NotJSON as exc:
        raise DataError(f"{name}: not JSON: {exc}") from None


def order_ids(source: Source, raw_ids: list[str], secrets: SecretForms | None) -> list[str]:
    """Normalise order ids given on the command line; a malformed one, or one holding one of
    `secrets`, is a DataError."""
    for n, raw in enumerate(raw_ids, 1):
        # Before the id's own check, whose refusal quotes it.
        if holds_secret(raw, secrets):
            raise DataError(f"the order id of order {n} given {GIVEN_SECRET}")
    try:
        return [normalize_order_id(source, raw) for raw in raw_ids]
    except InvalidOrderId as exc:
        raise DataError(str(exc)) from None


def reference_given(
    option: str,
    ref: str,
    secrets: SecretForms | None,
    *,
    given: bool = True,
    tracked: bool = False,
) -> str:
    """Return a reference given on the command line (`--ref`); one holding one of `secrets` is
    a DataError (refused first: the refusal of a malformed reference quotes it), and so is
    one that cannot be followed (`given`, `tracked`: see `reference_problem`)."""
    if holds_secret(ref, secrets):
        raise DataError(f"{option}: {GIVEN_SECRET}")
    if problem := reference_problem(ref, given=given, tracked=tracked):
        raise DataError(f"{option}: {problem}")
    return ref


class TrackFile(NamedTuple):
    """What a track file gives: its orders, and the first field of the header row skipped
    above them (None: no header row), as a log line may show it."""

    orders: list[tuple[str, str | None]]
    header: str | None


def read_track_file(path: Path, source: Source, secrets: SecretForms | None) -> TrackFile:
    """Read `ID` or `ID,REF` lines as CSV (quoted fields as a spreadsheet writes them; blank
    lines and # comments skipped); '-' is stdin. A line that is not one order is a DataError
    naming the file's line."""
    try:
        if str(path) == "-":
            data = read_stdin_bounded(MAX_TRACK_FILE_BYTES)
        else:
            data = read_bounded(path, MAX_TRACK_FILE_BYTES, pipes=True)
        # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM, which is not part of the first id.
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except NotReadHere as exc:
        raise DataError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        number = exc.object.count(b"\n", 0, exc.start) + 1
        raise DataError(f'{path}:{number}: not UTF-8 (save it as "CSV UTF-8")') from None
    out: list[tuple[str, str | None]] = []
    header: str | None = None
    first = True  # the first line of an order, or a header row above them
    named: dict[str, tuple[str, int]] = {}  # order id -> the reference of its line, its number
    # Lines end at \n, \r\n or a lone \r (an old Mac export) only: str.splitlines would also end
    # one at a form feed or a U+2028 pasted inside it, making two orders of one line. Each line
    # is one CSV record.
    for number, line in enumerate(_LINE_END.split(text), 1):
        bare = line.strip()
        if not bare or bare.startswith("#"):  # a comment: not a quoted "#..." field
            continue
        where = f"{path}:{number}"
        try:
            row = next(csv.reader([_unpadded(line)], skipinitialspace=True, strict=True))
        except csv.Error as exc:
            raise DataError(f"{where}: not a CSV line: {exc}") from None
        if not any(field.strip() for field in row):
            continue  # a spreadsheet's empty row (",,,")
        # The id's white space is no part of it (an id has none); a reference's is judged as
        # `--ref`'s is (`_track_line`). The spaces just after a comma are no field's (`ID, REF`).
        fields = [row[0].strip(), *row[1:]]
        while len(fields) > 2 and not fields[-1].strip():
            fields.pop()  # a spreadsheet's empty trailing columns
        if first:
            first = False
            if _is_header(fields):
                # Named in the log line: a CCV id made of header words would otherwise go
                # untracked without a trace. Cut, and never a secret, as a refusal's quote is.
                shown = clipped(fields[0], quoted=False)
                header = MASK if holds_secret(fields[0], secrets) else shown
                continue
        if holds_secret(fields[0], secrets):  # before the line's checks, whose refusals quote it
            raise DataError(f"{where}: the order id given {GIVEN_SECRET}")
        if _is_header(fields):
            # Two exports joined (`cat a.csv b.csv`): the second's header row was tracked as
            # an order (a CCV id may be letters alone).
            raise DataError(f"{where}: a header row below the first line: {clipped(fields[0])}")
        oid, ref = _track_line(where, source, fields, secrets)
        if ref is not None:
            # Either reference would be the order's in silence, the other's notifications
            # then checking nothing: as for an order followed under one already (`--relink`).
            before, on_line = named.setdefault(oid, (ref, number))
            if before != ref:
                raise DataError(
                    f"{where}: order {clipped(oid)} is given under reference {clipped(ref)} "
                    f"here and {clipped(before)} on line {on_line}: nothing tracked"
                )
        out.append((oid, ref))
    return TrackFile(out, header)


_LINE_END = re.compile(r"\r\n|\r|\n")
# One field from its start to the comma or line end after it: a quoted one (after the spaces the
# CSV reader skips) with the white space after its closing quote apart, or any other as it is.
_FIELD = re.compile(r'( *"(?:[^"]|"")*")[ \t]*(?=,|$)|[^,]*')


def _unpadded(line: str) -> str:
    """`line` without the white space after a quoted field's closing quote (`"o1","R1" `), which
    a hand edit leaves and the strict CSV reader refuses; no field's text changes."""
    parts: list[str] = []
    pos = 0
    while True:
        field = _FIELD.match(line, pos)
        assert field is not None  # its second branch matches anywhere
        parts.append(field[0] if field[1] is None else field[1])
        pos = field.end()
        if pos >= len(line):
            return ",".join(parts)
        pos += 1  # the comma


# What a spreadsheet's first row says above the ids ("Order ID", "order_number", "Order No."),
# in letters alone.
_HEADERS = frozenset(
    {"id", "order", "orderid", "ordernumber", "orderno", "ordernr", "number", "uuid", "orderuuid"}
)


def _is_header(fields: list[str]) -> bool:
    """Whether a line is a header row: its first field header words without a digit (`Order
    ID`, `Order No.`, `order_number`). Order ids have digits (CCNow's nine, CCV's UUIDs), so
    `ID-1001`, `Order-7` or `ORDERNR_5` are orders, though their letters alone spell a header.
    Only a file's first line may be one: below it, one is refused."""
    first = fields[0]
    if any(c.isdigit() for c in first):
        return False
    return "".join(c for c in first.lower() if c.isalpha()) in _HEADERS


def _track_line(
    where: str, source: Source, fields: list[str], secrets: SecretForms | None
) -> tuple[str, str | None]:
    if len(fields) > 2:
        raise DataError(f"{where}: {len(fields)} columns: a line is ID or ID,REF")
    raw, ref = fields[0], (fields[1] if len(fields) == 2 else "")
    if ";" in raw:
        raise DataError(f"{where}: ';' in the id: columns are separated by ',' (ID,REF)")
    try:
        oid = normalize_order_id(source, raw)
    except InvalidOrderId as exc:
        raise DataError(f"{where}: {exc}") from None
    if not ref:  # `ID` or `ID,`: none given
        return oid, None
    if source != "ccv":
        raise DataError(f"{where}: external references are for CCV orders")
    # As `--ref` (track_command): one stored with white space at an end settles its submit.
    return oid, reference_given(where, ref, secrets, given=False, tracked=True)
