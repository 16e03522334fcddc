"""Run a program without blocking the event loop: its fork+exec on a thread of its own, its
pipes and its exit awaited through the loop's readers (its exit through a pidfd).

asyncio's and uvloop's subprocess start fork+exec on the loop's thread and wait there until the
child has exec'd. An exec can hang (a program on a hung network file system, a slow fork of a
large process): the whole daemon froze with it, its polls, receiver, watchdog ping and stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence


class StartHangs(Exception):
    """The program's start did not end within its time; its thread goes on, and kills the
    program when the start ends."""


class Program:
    """A started program and our ends of its pipes: the write end of its stdin when it was not
    given one, the read end of its stderr; `close` closes them."""

    def __init__(self, proc: subprocess.Popen[bytes], stdin: int | None, stderr: int) -> None:
        self.proc = proc
        self._stdin = stdin
        self._stderr: int | None = stderr

    async def converse(self, data: bytes, keep: int) -> tuple[int, bytes]:
        """Write `data` to its stdin (when not given it before the start), wait for its exit
        and the end of its stderr (what it started and left holding stderr may still write);
        return its exit code (minus a signal's) and the last `keep` bytes of its stderr."""
        loop = asyncio.get_running_loop()
        tail = bytearray()
        stderr_ended: asyncio.Future[None] = loop.create_future()

        def read(fd: int) -> None:
            try:
                chunk = os.read(fd, keep)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if chunk:
                tail.extend(chunk)
                del tail[:-keep]  # a chatty program must not fill our memory
            else:
                loop.remove_reader(fd)
                if not stderr_ended.done():  # cancelled with the converse (a timeout, a stop)
                    stderr_ended.set_result(None)

        if self._stderr is not None:
            os.set_blocking(self._stderr, False)
            loop.add_reader(self._stderr, read, self._stderr)
        else:
            stderr_ended.set_result(None)
        if self._stdin is not None:
            await self._write(self._stdin, data)
        returncode = await exited(self.proc)
        await stderr_ended
        return returncode, bytes(tail)

    async def _write(self, fd: int, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        try:
            os.set_blocking(fd, False)
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    await _ready(loop.add_writer, loop.remove_writer, fd)
        except BrokenPipeError:
            pass  # the program need not read its input; its exit code decides
        finally:
            self._stdin = None
            os.close(fd)

    def close(self) -> None:
        """Close our ends of its pipes (done with, or given up on)."""
        loop = asyncio.get_running_loop()
        if self._stderr is not None:
            loop.remove_reader(self._stderr)
            os.close(self._stderr)
            self._stderr = None
        if self._stdin is not None:
            os.close(self._stdin)
            self._stdin = None


class _Start:
    """Where a start's thread and the loop meet: whichever comes second deals with the program
    (the loop takes it, or the thread, finding the loop gone, kills it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcome: subprocess.Popen[bytes] | Exception | None = None
        self._left = False

    def give(self, outcome: subprocess.Popen[bytes] | Exception) -> bool:
        """(The thread) hand the start's outcome over; False when the loop left it."""
        with self._lock:
            self._outcome = outcome
            return not self._left

    def take(self) -> subprocess.Popen[bytes] | Exception | None:
        """(The loop) take the outcome, or None: then the start is left to its thread."""
        with self._lock:
            self._left = self._outcome is None
            return self._outcome


class Launcher:
    """Starts programs one at a time, each in its own session: a start still hanging from an
    earlier attempt is waited for, never run beside (a hung file system would gather a
    thread and a half-made process per retry)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._last: asyncio.Future[None] | None = None  # the last start's thread ended

    async def start(
        self, argv: Sequence[str], env: Mapping[str, str], stdin: int | None, *, timeout_s: float
    ) -> Program:
        """Start `argv` within `timeout_s`, or raise StartHangs; `stdin` is the descriptor the
        program reads (taken: closed here), or None for a pipe the Program holds the write end
        of. Raises OSError (ValueError) when the program cannot be started."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        theirs = [] if stdin is None else [stdin]  # closed once the program has its copies
        ours: list[int] = []  # our ends of its pipes, until the Program holds them
        stdin_end: int | None = None
        try:
            if self._last is not None and not self._last.done():
                await asyncio.wait((self._last,), timeout=timeout_s)
                if not self._last.done():
                    raise StartHangs("an earlier start of it still hangs")
            if stdin is None:
                stdin, stdin_end = os.pipe()
                theirs.append(stdin)
                ours.append(stdin_end)
            stderr_end, stderr = os.pipe()
            theirs.append(stderr)
            ours.append(stderr_end)
        except BaseException:
            for fd in ours + theirs:
                os.close(fd)
            raise
        try:  # from here on the start's thread closes theirs
            proc = await self._launch(loop, argv, env, theirs, (stdin, stderr), deadline)
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        return Program(proc, stdin_end, stderr_end)

    async def _launch(
        self,
        loop: asyncio.AbstractEventLoop,
        argv: Sequence[str],
        env: Mapping[str, str],
        theirs: list[int],
        stdio: tuple[int, int],
        deadline: float,
    ) -> subprocess.Popen[bytes]:
        start = _Start()

        def launch() -> None:
            try:
                outcome: subprocess.Popen[bytes] | Exception = _popen(argv, env, *stdio)
            except Exception as exc:  # told to the loop, which raises it
                outcome = exc
            finally:
                for fd in theirs:
                    os.close(fd)
            if not start.give(outcome) and isinstance(outcome, subprocess.Popen):
                _kill_group(outcome.pid)  # the loop gave up on it: nothing of it lives on
                outcome.wait()

        try:
            self._last = ended = _on_thread(loop, launch, f"{self._name}-start")
        except BaseException:
            for fd in theirs:
                os.close(fd)
            raise
        try:
            # `wait`, not `wait_for`: on Python 3.10 and 3.11 wait_for returns the result of a
            # future that ends in the step it is cancelled, and the cancellation (the stop's
            # cutoff) was lost: the delivery went on with its program for all its `timeout`.
            await asyncio.wait((ended,), timeout=max(deadline - loop.time(), 0.0))
        except asyncio.CancelledError:
            if isinstance(outcome := start.take(), subprocess.Popen):
                # Waited for to its end (1 s at most): a second cancellation (the cutoff's,
                # then its batch's) must not leave the program killed but never reaped.
                stopping = asyncio.ensure_future(stop(outcome))
                while not stopping.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait((stopping,))
            raise
        outcome = start.take()
        if outcome is None:
            raise StartHangs("its start did not end within the timeout")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


# Python before 3.11.6 (3.10 among them) starts a program with vfork() and holds the GIL until
# the child's exec ends (CPython gh-104372): an exec that hangs froze every thread, the event
# loop's with it, start thread or not. Giving the child a group id (our own: nothing changes)
# makes it fork() instead, whose parent waits for the exec without the GIL.
_VFORK_HOLDS_GIL = sys.version_info < (3, 11, 6)


def _popen(
    argv: Sequence[str], env: Mapping[str, str], stdin: int, stderr: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=env,
        start_new_session=True,
        group=os.getegid() if _VFORK_HOLDS_GIL else None,
    )


def _on_thread(
    loop: asyncio.AbstractEventLoop, work: Callable[[], object], name: str
) -> asyncio.Future[None]:
    """Run `work` on a daemon thread of its own; the future ends when it does. Not the loop's
    executor: a thread that never returns would hold the process at its exit."""
    ended: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not ended.done():
            ended.set_result(None)

    def run() -> None:
        try:
            work()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle)

    try:
        threading.Thread(target=run, name=name, daemon=True).start()
    except RuntimeError as exc:  # "can't start new thread"
        raise OSError(errno.EAGAIN, f"cannot start a thread: {exc}") from None
    return ended


async def _ready(add: Callable[..., None], remove: Callable[[int], object], fd: int) -> None:
    """Wait until `fd` is ready, through the loop's reader or writer (`add`, `remove`)."""
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle() -> None:
        if not ready.done():
            ready.set_result(None)

    add(fd, settle)
    try:
        await ready
    finally:
        remove(fd)


async def exited(proc: subprocess.Popen[bytes]) -> int:
    """Return the program's exit code (minus the signal that ended it) once it has exited."""
    loop = asyncio.get_running_loop()
    if (code := proc.poll()) is not None:
        return code
    try:
        pidfd = os.pidfd_open(proc.pid)  # Linux >= 5.3: readable once the program exited
    except (AttributeError, OSError):
        await _on_thread(loop, proc.wait, "wait")
        return proc.wait()  # the thread's wait ends as the program does (its exit or a kill)
    try:
        while (code := proc.poll()) is None:
            await _ready(loop.add_reader, loop.remove_reader, pidfd)
        return code
    finally:
        os.close(pidfd)


def _kill_group(pid: int) -> None:
    # The program runs in its own session, so killing its group also ends what it started,
    # even when the program itself already exited: the group lives while any member does.
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


# How long what a program left behind in its group has, after SIGTERM, to end before SIGKILL.
LEFT_GRACE_S = 1.0


async def end_left(pgid: int, grace_s: float = LEFT_GRACE_S) -> None:
    """End what an exited program left running in its process group (a child it started in the
    background): SIGTERM, then SIGKILL to those still there after `grace_s`, or at once when
    cancelled (a stop). A delivery's program leaves nothing behind to run on unwatched.

    The program, the group's leader, was reaped before (its exit code read): from then on its
    pid, the group's id, may go to a new process once the group is empty, and a group that one
    made would be signalled instead. The kernel gives no pid that a group with members still
    uses as its id, so each signal here follows closely on seeing the group alive (the
    SIGTERM on the program's exit and the end of its stderr, the SIGKILL on a probe): only a
    group that empties in between, then the pids wrapping round to a new group leader, could
    be hit, a window of microseconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        return  # nothing left (ESRCH), the common case: one call
    try:
        # No event says a group has ended (its members are not our children): polled, briefly.
        deadline, pause = time.monotonic() + grace_s, 0.005
        while _group_lives(pgid) and time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
    finally:
        if _group_lives(pgid):
            _kill_group(pgid)


def _group_lives(pgid: int) -> bool:
    """Whether group `pgid` has a member still, one call whatever the host runs (reading every
    process's stat on the event loop stalled it a third of a second a step on a host of
    5,000). A zombie counts: a member that ended but its new parent has not reaped yet, which
    an init that never reaps keeps for ever; such a group has its grace, then a SIGKILL that
    changes nothing."""
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False  # ESRCH: none left, not even a zombie
    return True


async def stop(proc: subprocess.Popen[bytes], grace_s: float = 1.0) -> None:
    """Kill the program and its process group; wait up to `grace_s` for its end (a process
    that left the group can hold its pipes as long as it likes, not its exit)."""
    _kill_group(proc.pid)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(exited(proc), grace_s)
