"""Command sink: run a program per event with the event on stdin, and judge it by its exit code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Mapping, Sequence

from reconciler.config import CommandSinkConfig
from reconciler.config.secret import SECRET_ENV_ENDS
from reconciler.config.sinks import nul_word
from reconciler.logs import fields
from reconciler.sinks.base import (
    Cutoff,
    Delivered,
    DeliveryResult,
    OutboxEvent,
    RetryLater,
    deliver_in_order,
)

log = logging.getLogger("reconciler.sinks.command")

# A chatty program must not fill our memory: keep only the end of its stderr.
_MAX_STDERR_BYTES = 64 * 1024
_MAX_REASON_LINE = 200
# How long to wait for a killed program's pipes to close: a process that left its group
# can hold them open for as long as it likes.
_GRACE_S = 1.0
# The most a pipe holds on Linux (its default; less for a user over pipe-user-pages-soft).
_PIPE_BYTES = 64 * 1024


def child_environment(environ: Mapping[str, str], event: OutboxEvent) -> dict[str, str]:
    """Return the program's environment: ours without our secrets, plus the event's words."""
    env = {
        name: value
        for name, value in environ.items()
        if name != "CREDENTIALS_DIRECTORY"
        and not (name.upper().startswith("RECONCILER_") and name.upper().endswith(SECRET_ENV_ENDS))
    }
    env["RECONCILER_EVENT_TYPE"] = event.type
    env["RECONCILER_EVENT_ID"] = event.id
    env["RECONCILER_ORDER_ID"] = event.order_id or ""
    return env


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1].strip()[:_MAX_REASON_LINE] if lines else ""


def _exit_reason(returncode: int, stderr: bytes) -> str:
    if returncode < 0:
        try:
            reason = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            reason = f"killed by signal {-returncode}"
    else:
        reason = f"exit {returncode}"
    line = _last_line(stderr)
    return f"{reason}: {line}" if line else reason


async def _read_tail(stream: asyncio.StreamReader | None) -> bytes:
    tail = b""
    if stream is None:
        return tail
    while chunk := await stream.read(_MAX_STDERR_BYTES):
        tail = (tail + chunk)[-_MAX_STDERR_BYTES:]
    return tail


def filled_stdin(data: bytes) -> int | None:
    """Return the read end of a pipe that holds all of `data`, its write end closed, or None
    when `data` does not fit in the pipe's buffer (the caller then writes it as the program
    reads it). Raises OSError when no pipe can be had (out of descriptors)."""
    if len(data) > _PIPE_BYTES:
        return None  # cannot fit: no pipe made and filled in vain
    read_fd, write_fd = os.pipe()
    written = 0
    try:
        os.set_blocking(write_fd, False)
        written = os.write(write_fd, data)
    except BlockingIOError:
        pass  # a buffer smaller than the event (a user over pipe-user-pages-soft)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    if written == len(data):
        return read_fd
    os.close(read_fd)
    return None


async def _converse(proc: asyncio.subprocess.Process, data: bytes) -> tuple[int, bytes]:
    # Done when the program exited and stderr closed: what it started and left holding
    # stderr is still part of the delivery.
    reader = asyncio.ensure_future(_read_tail(proc.stderr))
    try:
        if proc.stdin is not None:  # an event too big to be in the pipe before the start
            try:
                proc.stdin.write(data)
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the program need not read its input; its exit code decides
            except RuntimeError:
                # uvloop's word for a pipe the loop closed when the program exited first:
                # "unable to perform operation on <WriteUnixTransport closed=True>".
                if not proc.stdin.is_closing():
                    raise
            finally:
                proc.stdin.close()
        returncode = await proc.wait()
        return returncode, await reader
    finally:
        reader.cancel()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    # The program runs in its own session, so killing its group also ends what it started,
    # even when the program itself already exited: the group lives while any member does.
    # A process that left the session keeps our end of its stderr open until it exits.
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(proc.wait(), _GRACE_S)


async def _start(
    argv: Sequence[str], stdin: int, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    # A cancellation while the loop still connects the new program's pipes (a loaded machine:
    # the program has run and started its own children by then) ended in asyncio's and
    # uvloop's own clean-up, which kills the program alone: its children lived on, and on
    # asyncio the cancelled delivery waited for them to close stderr. So the start runs to
    # its end, and a cancelled one is stopped as any cancelled delivery is, group and all.
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    )
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Waited for, not awaited: a second cancellation meanwhile (the cutoff abandons the
        # attempt, then its batch is cancelled) would cancel the start itself, as above. Its
        # end takes a few steps of the loop (the pipes connected), not the program's time.
        while not starting.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait((starting,))  # never cancels `starting`
        if starting.exception() is None:  # a start that failed left nothing to stop
            await _stop(starting.result())
        raise


def program_problem(command: Sequence[str]) -> str | None:
    """Say why `command` cannot be run here (a word holds a NUL, its program is not found), or
    None."""
    if nul_word(command) is not None:
        return "a word of the command holds a NUL character"
    if shutil.which(command[0]) is None:
        return f"no executable program {command[0]!r} (a path, or a name on PATH)"
    return None


class CommandSink:
    """Runs `config.command` (never through a shell) once per event, event body on stdin."""

    def __init__(self, config: CommandSinkConfig) -> None:
        self.name = config.name
        self._argv = config.command
        self._timeout_s = config.timeout_s
        # The config refuses it; asyncio says so with a ValueError, but uvloop runs the program
        # with the words cut at their NUL: delivered, and wrong. Known once: the environment
        # cannot hold one (os.environ refuses it), nor the event's words (validated ids).
        self._nul = nul_word(config.command) is not None
        if (problem := program_problem(config.command)) is not None:
            # Said once at the start, not first at an event: each would be retried until
            # max_age, then dead-lettered.
            log.error("sink.program_missing", extra=fields(sink=self.name, problem=problem))

    def __repr__(self) -> str:
        return f"CommandSink(name={self.name!r})"

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        """Run the command once per event, in order (the dispatcher logs failures)."""
        return await deliver_in_order(events, self._run, cutoff)

    async def close(self) -> None:
        """Nothing is held between deliveries."""

    async def _run(self, event: OutboxEvent) -> DeliveryResult:
        if self._nul:
            return RetryLater(f"cannot run: {self._argv[0]}: embedded null byte")
        env = child_environment(os.environ, event)
        # The event in its stdin before the program starts: written after, a daemon killed in
        # between left the program (in its own session, alive) an empty or torn input. A line
        # end, so that a shell's `read -r line` gets the event too.
        data = event.body + b"\n"
        filled: int | None = None
        try:
            filled = filled_stdin(data)
            proc = await _start(
                self._argv, asyncio.subprocess.PIPE if filled is None else filled, env
            )
        except OSError as exc:
            # Out of descriptors, the pipe for stdin fails first and says why ("Too many open
            # files"); uvloop, left to make that pipe itself, would say "Unknown error -1".
            return RetryLater(f"cannot run: {self._argv[0]}: {exc.strerror or type(exc).__name__}")
        except ValueError as exc:
            return RetryLater(f"cannot run: {self._argv[0]}: {exc}")
        finally:
            if filled is not None:
                os.close(filled)  # the program holds its own copy
        finished = False
        returncode: int | None
        try:
            returncode, stderr = await asyncio.wait_for(_converse(proc, data), self._timeout_s)
            finished = True
        except asyncio.TimeoutError:
            # The program may have exited and left something holding stderr: its exit code,
            # when it has one, is still its verdict.
            returncode, stderr = proc.returncode, b""
        finally:
            if not finished:  # timeout or cancellation: nothing outlives its delivery
                await _stop(proc)
        if returncode is None:
            return RetryLater("timeout")
        if returncode == 0:
            return Delivered()
        return RetryLater(_exit_reason(returncode, stderr))
