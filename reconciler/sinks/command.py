"""Command sink: run a program per event with the event on stdin, and judge it by its exit code."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Mapping, Sequence

from reconciler.config import CommandSinkConfig
from reconciler.config.secret import SECRET_ENV_ENDS
from reconciler.config.sinks import nul_word
from reconciler.logs import fields
from reconciler.redact import SecretForms, mask, text_forms
from reconciler.sinks.base import (
    Cutoff,
    Delivered,
    DeliveryResult,
    OutboxEvent,
    RetryLater,
    deliver_in_order,
)
from reconciler.sinks.command_launch import LEFT_GRACE_S, Launcher, StartHangs, end_left, stop

log = logging.getLogger("reconciler.sinks.command")

# A chatty program must not fill our memory: keep only the end of its stderr.
_MAX_STDERR_BYTES = 64 * 1024
_MAX_REASON_LINE = 200
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


def _last_line(stderr: bytes, secrets: SecretForms | None) -> str:
    lines = stderr.decode("utf-8", errors="replace").strip().splitlines()
    # A hook may print what it was given or read (a login that failed, with its password):
    # every secret of the config is masked before the line is cut, so no cut leaves a piece.
    return mask(lines[-1].strip(), secrets, limit=_MAX_REASON_LINE) if lines else ""


def _exit_reason(returncode: int, stderr: bytes, secrets: SecretForms | None = None) -> str:
    if returncode < 0:
        try:
            reason = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            reason = f"killed by signal {-returncode}"
    else:
        reason = f"exit {returncode}"
    line = _last_line(stderr, secrets)
    return f"{reason}: {line}" if line else reason


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


def program_problem(command: Sequence[str]) -> str | None:
    """Say why `command` cannot be run here (a word holds a NUL, its program is not found), or
    None."""
    if nul_word(command) is not None:
        return "a word of the command holds a NUL character"
    if shutil.which(command[0]) is None:
        return f"no executable program {command[0]!r} (a path, or a name on PATH)"
    return None


class CommandSink:
    """Runs `config.command` (never through a shell) once per event, event body on stdin;
    `secrets` (the config's) are masked in what its stderr says; what a program leaves running
    has `left_grace_s` after SIGTERM before SIGKILL."""

    def __init__(
        self,
        config: CommandSinkConfig,
        secrets: Sequence[str] = (),
        *,
        left_grace_s: float = LEFT_GRACE_S,
    ) -> None:
        self.name = config.name
        self._left_grace_s = left_grace_s
        self._secrets = text_forms(secrets)
        self._argv = config.command
        self._timeout_s = config.timeout_s
        self._launcher = Launcher(f"sink-{config.name}")
        # The config refuses it; a command built in code is refused here, known once (uvloop's
        # start ran the program with the words cut at their NUL: delivered, and wrong). The
        # environment cannot hold one (os.environ refuses it), nor the event's words.
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
        # Through a cutoff, each attempt runs in a task of its own, and a cancellation of it is
        # the cutoff giving up: one that comes while the program's leftovers end keeps the
        # program's verdict. Without, the attempt runs in the caller's task, whose
        # cancellation must reach it.
        run = functools.partial(self._run, verdict_stands=cutoff is not None)
        return await deliver_in_order(events, run, cutoff)

    async def close(self) -> None:
        """Nothing is held between deliveries (a start whose exec hangs keeps its thread, which
        kills the program once the start ends)."""

    async def _run(self, event: OutboxEvent, *, verdict_stands: bool) -> DeliveryResult:
        if self._nul:
            return RetryLater(f"cannot run: {self._argv[0]}: embedded null byte")
        env = child_environment(os.environ, event)
        # The event in its stdin before the program starts: written after, a daemon killed in
        # between left the program (in its own session, alive) an empty or torn input. A line
        # end, so that a shell's `read -r line` gets the event too.
        data = event.body + b"\n"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        try:
            # Taken by the start, which closes it once the program holds its own copy.
            filled = filled_stdin(data)
            program = await self._launcher.start(self._argv, env, filled, timeout_s=self._timeout_s)
        except StartHangs as exc:
            # Its exec hangs (a program on a hung network file system): the loop never waits
            # for it, and the program is killed when the start ends at last.
            return RetryLater(f"cannot run: {self._argv[0]}: {exc}")
        except OSError as exc:
            # Out of descriptors, the pipe for stdin fails first and says why ("Too many open
            # files").
            return RetryLater(f"cannot run: {self._argv[0]}: {exc.strerror or type(exc).__name__}")
        except ValueError as exc:
            return RetryLater(f"cannot run: {self._argv[0]}: {exc}")
        proc = program.proc
        try:
            try:
                returncode, stderr = await asyncio.wait_for(
                    program.converse(data, _MAX_STDERR_BYTES), deadline - loop.time()
                )
            except asyncio.TimeoutError:
                # The program may have exited and left something holding stderr: its exit
                # code, when it has one, is still its verdict.
                if (returncode := proc.returncode) is None:
                    await stop(proc)  # nothing outlives its delivery
                    return RetryLater("timeout")
                result = self._verdict(returncode, b"")
                await self._end(stop(proc), verdict_stands)  # kills the group, waits no more
                return result
            except BaseException:  # cancelled (a stop) before its exit: killed, not judged
                await stop(proc)
                raise
        finally:
            program.close()
        # Its exit code decides, whatever comes after (README): judged before its leftovers
        # are ended, so that a stop during their grace cannot turn a 0 into a retry.
        result = self._verdict(returncode, stderr)
        # What it started and left running, in its group, is ended too.
        await self._end(end_left(proc.pid, self._left_grace_s), verdict_stands)
        return result

    @staticmethod
    async def _end(ending: Awaitable[None], verdict_stands: bool) -> None:
        """Await the end of what a judged program left; cancelled (`end_left` and `stop` kill
        the group at once), return when the verdict stands: raised, the cutoff took the event
        for unconfirmed, and it was delivered again."""
        try:
            await ending
        except asyncio.CancelledError:
            if not verdict_stands:
                raise

    def _verdict(self, returncode: int, stderr: bytes) -> DeliveryResult:
        if returncode == 0:
            return Delivered()
        return RetryLater(_exit_reason(returncode, stderr, self._secrets))
