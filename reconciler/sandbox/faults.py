"""The simulator's faults: the `--faults` grammar and the answers a fault gives instead."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

from aiohttp import web

from reconciler.model import Source

_SOURCES: Final[Mapping[str, Source]] = {"ccv": "ccv", "ccnow": "ccnow"}
FaultKind = Literal[
    "maintenance",
    "http500",
    "slow",
    "html",
    "http400",
    "http403",
    "http429",
    "html404",
    "submit_timeout",
    "crlf",
    "cr",
    "partial",
    "duplicate",
    "unknown_message",
    "drop",
]
_FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
# Kinds that exist for one provider only: CCV's documented error codes, a gateway's 404 page and
# a submit whose answer never comes; the shapes of CCNow's line answers.
_ONLY: Final[Mapping[FaultKind, Source]] = {
    "http400": "ccv",
    "http403": "ccv",
    "http429": "ccv",
    "html404": "ccv",
    "submit_timeout": "ccv",
    "crlf": "ccnow",
    "cr": "ccnow",
    "partial": "ccnow",
    "duplicate": "ccnow",
    "unknown_message": "ccnow",
    "drop": "ccnow",
}
_CCV_ERRORS: Final[Mapping[FaultKind, tuple[int, str]]] = {
    "http400": (400, "order data has missing/invalid values"),
    "http403": (403, "forbidden"),
    "http429": (429, "too many requests"),
}
# Kinds that do not replace an answer: they delay it, or (submit_timeout) act after the order
# was created, in the submit handler itself.
_NOT_INSTEAD: frozenset[FaultKind] = frozenset({"slow", "submit_timeout"})
# What a 429 asks the client to wait, in seconds: short, so that a demo keeps moving.
RETRY_AFTER_S = 1
# A `message` line outside the documented two (`no_pending_orders`, `error_message ...`).
UNKNOWN_MESSAGE = "message account_locked\n"

_HTML_ERROR_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1><p>Please try again later.</p></body></html>\n"
)
_HTML_NOT_FOUND_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
    "<body><center><h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>\n"
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: `kind` on `provider` (None: both) with its share or delay in `value`."""

    kind: FaultKind
    provider: Source | None
    value: float


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse `kind[:provider][=value],...`; raise ValueError naming the bad item."""
    faults: list[Fault] = []
    seen: set[tuple[str, Source | None]] = set()
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        fault = _parse_fault(item)
        if (fault.kind, fault.provider) in seen:
            raise ValueError(f"fault {item!r}: given twice")
        seen.add((fault.kind, fault.provider))
        faults.append(fault)
    return tuple(faults)


def _parse_fault(item: str) -> Fault:
    head, has_value, value_text = item.partition("=")
    name, _, provider = head.strip().partition(":")
    name, provider = name.strip(), provider.strip()
    kind = next((k for k in _FAULT_KINDS if k == name), None)
    if kind is None:
        raise ValueError(f"fault {item!r}: unknown kind {name!r} (use {', '.join(_FAULT_KINDS)})")
    scope: Source | None = _ONLY.get(kind)
    if provider in _SOURCES:
        if scope is not None and provider != scope:
            raise ValueError(f"fault {item!r}: {kind} is a {scope} fault only")
        scope = _SOURCES[provider]
    elif provider or ":" in head:
        raise ValueError(f"fault {item!r}: unknown provider {provider!r} (use ccv or ccnow)")
    if kind == "maintenance":
        if has_value:
            raise ValueError(f"fault {item!r}: maintenance takes no value")
        return Fault("maintenance", scope, 1.0)
    if not has_value:
        raise ValueError(f"fault {item!r}: {kind} needs a value, e.g. {kind}=0.2")
    try:
        value = float(value_text)
    except ValueError:
        raise ValueError(f"fault {item!r}: value {value_text.strip()!r} is not a number") from None
    if kind == "slow":
        if not (math.isfinite(value) and 0 <= value <= 3600):
            raise ValueError(f"fault {item!r}: slow takes seconds from 0 to 3600")
        return Fault("slow", scope, value)
    if not 0 <= value <= 1:
        raise ValueError(f"fault {item!r}: {kind} takes a share from 0 to 1")
    return Fault(kind, scope, value)


def json_error(status: int, message: str) -> web.Response:
    """CCV's error answer: `{"error": message}` with that status."""
    return web.json_response({"error": message}, status=status)


class Faults:
    """The active faults per provider, and the seeded draw that decides which request gets one."""

    def __init__(self, spec: str, seed: int) -> None:
        self._rng = random.Random(f"{seed}/faults")
        self._active: dict[Source, tuple[Fault, ...]] = {"ccv": (), "ccnow": ()}
        self.set(spec)

    def set(self, spec: str) -> None:
        """Replace the active faults with SPEC ('' clears them); ValueError on a bad SPEC."""
        faults = parse_faults(spec)
        self._active = {
            source: tuple(f for f in faults if f.provider in (None, source))
            for source in ("ccv", "ccnow")
        }

    def any(self, source: Source) -> bool:
        """Whether any fault is active for `source`."""
        return bool(self._active[source])

    async def response(self, source: Source) -> web.StreamResponse | None:
        """Wait out a slow fault; return the answer a fault gives instead, if one strikes."""
        faults = self._active[source]
        delay = max((f.value for f in faults if f.kind == "slow"), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        for fault in faults:
            if fault.kind == "maintenance":
                if source == "ccv":
                    return json_error(503, "service unavailable")
                return web.Response(
                    text="error_message system down for maintenance\n", content_type="text/plain"
                )
            if fault.kind in _NOT_INSTEAD or _ONLY.get(fault.kind) == "ccnow":
                continue
            if self._rng.random() >= fault.value:
                continue
            if fault.kind == "http500":
                return web.Response(status=500, text="500 Internal Server Error")
            if fault.kind == "html":
                return web.Response(text=_HTML_ERROR_PAGE, content_type="text/html")
            if fault.kind == "html404":
                return web.Response(status=404, text=_HTML_NOT_FOUND_PAGE, content_type="text/html")
            status, message = _CCV_ERRORS[fault.kind]
            answer = json_error(status, message)
            if status == 429:
                answer.headers["Retry-After"] = str(RETRY_AFTER_S)
            return answer
        return None

    def submit_answer_lost(self) -> bool:
        """Draw whether this CCV submit, its order created, is never answered."""
        return any(
            f.kind == "submit_timeout" and self._rng.random() < f.value for f in self._active["ccv"]
        )

    def ccnow_shape(self, text: str) -> tuple[str, bool]:
        """Bend a CCNow answer as the shape faults say; return it and whether to cut it off."""
        struck = {
            fault.kind
            for fault in self._active["ccnow"]
            if _ONLY.get(fault.kind) == "ccnow"
            and fault.kind != "drop"
            and self._rng.random() < fault.value
        }
        # A fixed order, whatever the order in SPEC: the answer, its lines, their ends, the cut.
        if "unknown_message" in struck:
            text = UNKNOWN_MESSAGE
        if "duplicate" in struck:
            text = "".join(f"{line}\n" for line in text.splitlines() for _ in range(2))
        if "crlf" in struck:
            text = text.replace("\n", "\r\n")
        elif "cr" in struck:
            text = text.replace("\n", "\r")
        return text, "partial" in struck

    def drops(self) -> bool:
        """Whether to drop the connection of a CCNow post whose actions were just applied,
        so that the client cannot tell whether they were (the `drop` fault)."""
        share = max((f.value for f in self._active["ccnow"] if f.kind == "drop"), default=0.0)
        return share > 0 and self._rng.random() < share


def drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the connection without a byte of answer, as a link lost after the request."""
    if request.transport is not None:
        request.transport.abort()
    # Never sent: the connection is gone.
    return web.Response(status=500)


class _CloseDelimited(web.StreamResponse):
    """A response without length or chunking, so that only closing the connection ends it."""

    # WebSocketResponse turns the same switch off; without it aiohttp would chunk the body.
    _length_check = False


def cut_mid_line(text: str) -> str:
    """Return `text` cut three quarters into its last line, with no line end after it."""
    body = text.rstrip("\r\n")
    start = max(body.rfind("\n"), body.rfind("\r")) + 1
    return body[: start + (len(body) - start) * 3 // 4]


async def send_cut_off(request: web.Request, text: str) -> web.StreamResponse:
    """Answer with `text` cut mid-line, then close the connection, as a dropped link would."""
    response = _CloseDelimited(headers={"Content-Type": "text/plain; charset=utf-8"})
    response.force_close()
    await response.prepare(request)
    await response.write(cut_mid_line(text).encode())
    await response.write_eof()
    return response
