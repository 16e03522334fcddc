"""The simulator's faults: the `--faults` grammar and the answers a fault gives instead."""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from reconciler.model import Source

_SOURCES: dict[str, Source] = {"ccv": "ccv", "ccnow": "ccnow"}
FaultKind = Literal["maintenance", "http500", "slow", "html"]
_FAULT_KINDS: tuple[FaultKind, ...] = ("maintenance", "http500", "slow", "html")

_HTML_ERROR_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1><p>Please try again later.</p></body></html>\n"
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
    kind, _, provider = head.strip().partition(":")
    kind, provider = kind.strip(), provider.strip()
    if kind not in _FAULT_KINDS:
        raise ValueError(f"fault {item!r}: unknown kind {kind!r} (use {', '.join(_FAULT_KINDS)})")
    scope: Source | None = None
    if provider in _SOURCES:
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
    return Fault("http500" if kind == "http500" else "html", scope, value)


def _json_error(status: int, message: str) -> web.Response:
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
                    return _json_error(503, "service unavailable")
                return web.Response(
                    text="error_message system down for maintenance\n", content_type="text/plain"
                )
            if fault.kind == "http500" and self._rng.random() < fault.value:
                return web.Response(status=500, text="500 Internal Server Error")
            if fault.kind == "html" and self._rng.random() < fault.value:
                return web.Response(text=_HTML_ERROR_PAGE, content_type="text/html")
        return None
