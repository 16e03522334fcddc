"""Reading what a command is given: JSON documents, track files, external references."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import strict_json
from ..exits import DataError
from ..model import InvalidOrderId, Source, normalize_order_id, reference_problem

MAX_JSON_INPUT_BYTES = 16 * 1024 * 1024


def read_json(name: str) -> object:
    """Read one JSON document from a file or stdin ('-'); malformed input is a DataError."""
    try:
        if name == "-":
            raw = sys.stdin.buffer.read(MAX_JSON_INPUT_BYTES + 1)
        else:
            with open(name, "rb") as f:
                raw = f.read(MAX_JSON_INPUT_BYTES + 1)
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(raw) > MAX_JSON_INPUT_BYTES:
        raise DataError(f"{name}: larger than {MAX_JSON_INPUT_BYTES} bytes")
    try:
        return strict_json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{name}: not JSON: {exc}") from None


def order_ids(source: Source, raw_ids: list[str]) -> list[str]:
    """Normalise order ids given on the command line; a malformed one is a DataError."""
    try:
        return [normalize_order_id(source, raw) for raw in raw_ids]
    except InvalidOrderId as exc:
        raise DataError(str(exc)) from None


def read_track_file(path: Path, source: Source) -> list[tuple[str, str | None]]:
    """Read `ID` or `ID,REF` lines (blank lines and # comments skipped); '-' is stdin."""
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM, which is not part of the first id.
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        number = exc.object.count(b"\n", 0, exc.start) + 1
        raise DataError(f'{path}:{number}: not UTF-8 (save it as "CSV UTF-8")') from None
    out: list[tuple[str, str | None]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        raw, _, ref = line.partition(",")
        try:
            oid = normalize_order_id(source, raw.strip())
        except InvalidOrderId as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
        ref = ref.strip()
        if ref and source != "ccv":
            raise DataError(f"{path}:{number}: external references are for CCV orders")
        if ref and (problem := reference_problem(ref)):
            raise DataError(f"{path}:{number}: {problem}")
        out.append((oid, ref or None))
    return out
