"""The event loop every command runs on: uvloop where it is installed, asyncio's own otherwise.

A catch-up keeps one core busy in the event loop and aiohttp; uvloop's loop (libuv, as uvicorn
uses it) takes 3-8 % off it in the benchmarks. RECONCILER_EVENT_LOOP=asyncio keeps the standard
loop. A command that needs the config ends on SIGTERM as on Ctrl-C: what it has under way ends
first (ended_by_sigterm); not `run`, which sets its own handlers (daemon.py). Ctrl-C cancels
a command, on Python 3.10 too, and a second one interrupts its end from the loop (CtrlC).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, NoReturn, TypeVar

from .exits import Terminated

T = TypeVar("T")

ENV = "RECONCILER_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


class EventLoopError(Exception):
    """RECONCILER_EVENT_LOOP names a loop that cannot be used; `problem` says why (the command
    line makes it README's one config error line)."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{ENV}: {problem}")
        self.problem = problem


def loop_name() -> str:
    """Return the loop commands run on: "uvloop" or "asyncio"."""
    # Case and blanks do not count: a unit with `Asyncio` or a padded value started before, and
    # must keep starting after an upgrade.
    given = os.environ.get(ENV, "")
    wanted = given.strip().lower() or "auto"
    if wanted not in CHOICES:
        raise EventLoopError(f"must be one of {', '.join(CHOICES)}, not {given!r}")
    installed = importlib.util.find_spec("uvloop") is not None
    if wanted == "uvloop" and not installed:
        raise EventLoopError("uvloop is not installed")
    return "uvloop" if wanted != "asyncio" and installed else "asyncio"


def run(main: Coroutine[Any, Any, T], *, sigterm_cancels: bool = False) -> T:
    """asyncio.run on the chosen loop (see loop_name); Ctrl-C as CtrlC says; with
    `sigterm_cancels`, SIGTERM ends `main` as Ctrl-C does (ended_by_sigterm)."""
    try:
        name = loop_name()
    except EventLoopError:
        main.close()  # never started; closed, it is not reported as "never awaited"
        raise
    if sigterm_cancels:
        main = ended_by_sigterm(main)
    ctrl_c = CtrlC()
    try:
        # Set before the loop runs: asyncio.run (its Runner, from 3.11 on) then sets none of
        # its own, which would raise the second Ctrl-C's KeyboardInterrupt where it lands.
        with ctrl_c.handling():
            if name == "uvloop":
                import uvloop

                return uvloop.run(ctrl_c.cancels(main))
            return asyncio.run(ctrl_c.cancels(main))
    except _Interrupted:
        raise KeyboardInterrupt from None


class _Interrupted(Exception):
    """Ctrl-C cancelled the command (CtrlC): a KeyboardInterrupt once the loop is closed,
    where 3.11's asyncio.run raises it. Not raised as one in the task: asyncio re-raises a
    KeyboardInterrupt through the loop, around its own clean-up."""


class CtrlC:
    """Ctrl-C while a command runs: the first cancels it, as asyncio.run does from Python 3.11
    on (on 3.10 too, whose asyncio.run let the KeyboardInterrupt out of wherever the loop was:
    a write already sent was cut off and stayed `sending`, where a cancel lets it end and
    records its answer); a second interrupts its end with a KeyboardInterrupt, as there, but
    raised by the loop between two steps of its tasks. Raised where the signal came, in the
    middle of a step (the stop's own log line), it unwound the command's end, closing the
    store and the session under a write still out, which then failed to record its lost
    answer ("Task exception was never retrieved"); from the loop, asyncio.run cancels every
    task together, the write's too, before they close. One the loop has not taken yet (its
    thread held, a blocking read) is followed by a KeyboardInterrupt at once, as Python's
    own handler raises it before the command runs and after it ended. Only where Ctrl-C has
    Python's default handler, in the main thread, as the Runner's."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._signals = 0
        self._taken = 0  # of `_signals`, those the loop took

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Handle Ctrl-C for the block, where it has Python's default handler."""
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield
            return
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread
            yield
            return
        try:
            yield
        finally:
            # Only our own: a command may set its own (the daemon's stop).
            if signal.getsignal(signal.SIGINT) == self._on_sigint:
                signal.signal(signal.SIGINT, signal.default_int_handler)

    async def cancels(self, main: Coroutine[Any, Any, T]) -> T:
        """Await `main`, the command, which Ctrl-C cancels from now on."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        try:
            return await main
        except asyncio.CancelledError:
            # After a second Ctrl-C, the cancel is asyncio.run's last clean-up, its
            # KeyboardInterrupt on the way out already: the task ends cancelled, as 3.11's, not
            # with an exception that clean-up logs as "unhandled" with a traceback.
            if self._taken == 1:
                raise _Interrupted from None
            raise

    def _on_sigint(self, signum: int, frame: object) -> None:
        self._signals += 1
        loop, task = self._loop, self._task
        if loop is None or task is None or task.done() or self._signals > self._taken + 1:
            raise KeyboardInterrupt
        # From the loop, not here: a handler runs between any two bytecodes of the loop's.
        loop.call_soon_threadsafe(self._take)

    def _take(self) -> None:
        self._taken += 1
        if self._task is None or self._task.done():
            return  # its end is under way: nothing is left to interrupt
        if self._taken == 1:
            self._task.cancel()
            return
        raise KeyboardInterrupt


async def ended_by_sigterm(main: Coroutine[Any, Any, T]) -> T:
    """Await `main`; SIGTERM cancels it as Ctrl-C does (asyncio.run), so that what it has under
    way ends as at Ctrl-C, a write already sent let end and its answer recorded (killed at once,
    it stayed `sending` and became uncertain), then raise Terminated. A second SIGTERM (not
    timeout(1)'s echo of the first: SigtermEcho) kills at once, and so does the first when the
    loop does not take the cancel within a second (a command blocked reading its config or input
    from a pipe: nothing is under way yet). Where no handler can be set (not the main thread),
    `main` is awaited as it is."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    signalled = False
    echo = SigtermEcho()
    unanswered = threading.Event()

    def end_unanswered() -> None:  # in a timer's thread, where no handler can be set
        unanswered.set()
        os.kill(os.getpid(), signal.SIGTERM)

    # A handler of the signal module, not the loop's: that one runs only when the loop gets
    # control, and a command blocked in a read then ignored SIGTERM.
    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal signalled
        if echo(signum) and not unanswered.is_set():
            return
        if signalled:
            end_by_sigterm()
            return
        signalled = True
        timer = threading.Timer(1.0, end_unanswered)
        timer.daemon = True
        timer.start()

        def cancel() -> None:
            timer.cancel()
            if task is not None:
                task.cancel()

        loop.call_soon_threadsafe(cancel)

    try:
        before = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread
        return await main
    try:
        return await main
    except asyncio.CancelledError:
        if signalled:
            raise Terminated("stopped by SIGTERM") from None
        raise
    finally:
        # Only our own: `run` leaves its handler for the process's last steps (asyncio.run's
        # wait for its threads), where SIG_DFL put back killed it (143) after a clean stop.
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, before)


class SigtermEcho:
    """Tells GNU timeout(1)'s echo of a SIGTERM from a second signal. timeout sends its signal to
    the command and then to its whole process group, the command included: one stop, two
    SIGTERMs a moment apart (1 in 5 `timeout` stops of `run` ended in daemon.force_exit). A
    SIGTERM within ECHO_S of the first is that echo; a later one (a supervisor's second) counts,
    and so does a second SIGINT or SIGHUP, `timeout -s INT`'s echo too (README says so): a
    person's double Ctrl-C may come as soon, and a handler the loop runs cannot tell when a
    signal came, only when it got to it."""

    ECHO_S = 1.0

    def __init__(self) -> None:
        self._first_at: float | None = None

    def __call__(self, signum: int) -> bool:
        """Whether `signum` is the echo of an earlier SIGTERM, to be ignored."""
        if signum != signal.SIGTERM:
            return False
        now = time.monotonic()
        if self._first_at is None:
            self._first_at = now
            return False
        return now - self._first_at < self.ECHO_S


def exit_now(code: int) -> NoReturn:
    """Exit at once with `code`, as a kill would, the log lines written first."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


def end_by_sigterm() -> None:
    """End this process as SIGTERM's default does (a command ended_by_sigterm let finish)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that stop a long-running command cleanly: SIGTERM, SIGINT and SIGHUP (a
    closed terminal: there is nothing to reload), but SIGHUP when it is ignored (`nohup`),
    which a handler would undo."""
    hangup = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    return (signal.SIGTERM, signal.SIGINT, *hangup)


def keep_stop_handled() -> None:
    """Ignore, until the process is gone, a stop signal whose handler a command left in place
    (`run`'s after its stop: exit at once with the stop's code): Python's exit puts the
    default action back in place of a Python handler, and a repeat 25-150 ms after the first
    SIGTERM ended `run` with 143, not 0; SIG_IGN it leaves. Only once the command returned:
    nothing starts a process after (a process started would inherit SIG_IGN)."""
    for sig in stop_signals():
        handler = signal.getsignal(sig)
        if callable(handler) and handler is not signal.default_int_handler:
            signal.signal(sig, signal.SIG_IGN)


def stop_once(stop: asyncio.Event, signals: tuple[signal.Signals, ...]) -> None:
    """Set `stop` at the first of `signals`, and let those that follow change nothing until the
    process is gone: the stop is under way, and a repeat (timeout(1)'s echo, a second Ctrl-C)
    ended it by the signal (143, 130) instead of 0 once the loop closed, or Python's exit, put
    the default action back. Call it before the loop starts a thread; not in a command that
    starts processes (they would start with the signals blocked)."""
    loop = asyncio.get_running_loop()
    # Blocked in this thread and so in every thread it starts from now on (uvloop's own too,
    # which no handler's change reaches), and taken by one thread of ours: no default action
    # nor handler's change can end the process by them, up to its last steps.
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    def take() -> None:
        signal.sigwait(signals)
        with contextlib.suppress(RuntimeError):  # the loop closed: the command ended already
            loop.call_soon_threadsafe(stop.set)
        while True:  # the repeats
            signal.sigwait(signals)

    threading.Thread(target=take, name="stop-signals", daemon=True).start()
