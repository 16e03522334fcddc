"""Progress of long commands (`track --from-file`, `catch-up`, `replay`) for a person watching:
a tqdm bar (count, rate, estimate) on stderr when stderr is a terminal, nothing otherwise, so
that logs, pipes and the journal get the JSON lines alone."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO, cast

Advance = Callable[[int], None]


def _ignore(n: int) -> None:
    pass


class _AroundBars:
    """A stream that lifts the bars off the terminal for each write and draws them again, so
    that log lines written meanwhile stay whole lines."""

    def __init__(self, stream: TextIO, bars: Any) -> None:
        self.stream = stream
        self.bars = bars  # the tqdm class, which knows every bar drawn

    def write(self, text: str) -> int:
        with self.bars.external_write_mode(file=self.stream):
            written = self.stream.write(text)
            self.stream.flush()
        return written

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def progress(what: str, total: int | None, *, unit: str = "orders") -> Iterator[Advance]:
    """Show a bar for `total` units (None: unknown) while the block runs; yield the function
    that advances it by n."""
    stream = sys.stderr
    if not stream.isatty():
        yield _ignore
        return
    from tqdm import tqdm  # only here: importing it costs a tenth of a second

    bar = tqdm(
        total=total,
        desc=what,
        unit=f" {unit}",
        file=stream,
        dynamic_ncols=True,
        mininterval=0.25,
        smoothing=0.1,
    )
    with _log_lines_around(stream, tqdm):
        try:
            yield bar.update
        finally:
            bar.close()


@contextlib.contextmanager
def _log_lines_around(stream: TextIO, bars: Any) -> Iterator[None]:
    """Route the log around the bars meanwhile: its handlers' stream, which the log sink's
    event lines share (see LogSink)."""
    around = cast(TextIO, _AroundBars(stream, bars))
    handlers = [
        h
        for h in logging.getLogger("reconciler").handlers
        if isinstance(h, logging.StreamHandler) and h.stream is stream
    ]
    for h in handlers:
        h.setStream(around)
    try:
        yield
    finally:
        for h in handlers:
            h.setStream(stream)
