"""Ctrl-C of a command run by eventloop.run, in this process: as asyncio.run from Python 3.11
on, on 3.10 too, but a second one raised by the loop, between two steps (eventloop.CtrlC)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from reconciler import eventloop

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="Ctrl-C's handler is set in the main thread only",
)


def test_a_second_ctrl_c_while_the_command_ends_leaves_no_unhandled_error() -> None:
    # On 3.10 the command, cancelled again by asyncio.run's last clean-up after the second
    # Ctrl-C's KeyboardInterrupt, ended with the first one's exception: logged "unhandled
    # exception during asyncio.run() shutdown", with a traceback.
    seen: list[str] = []

    async def command() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: seen.append(context["message"]))
        never = asyncio.Event()
        try:
            loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
            await never.wait()
        except asyncio.CancelledError:
            loop.call_soon(os.kill, os.getpid(), signal.SIGINT)  # while it ends
            await never.wait()

    for _ in range(2):  # in-process, again: Ctrl-C's handler was put back
        with pytest.raises(KeyboardInterrupt):
            eventloop.run(command())
        assert seen == []
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_one_ctrl_c_lets_the_command_end_then_raises_keyboard_interrupt() -> None:
    ended: list[str] = []

    async def command() -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # its end may await
            ended.append("ended")
            raise

    with pytest.raises(KeyboardInterrupt):
        eventloop.run(command())
    assert ended == ["ended"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_in_the_middle_of_a_step_is_raised_by_the_loop_after_it() -> None:
    # Raised where it came, in the middle of the stop's step, it unwound the command's end
    # while its other tasks (a write still out) went on, and closed the store under them.
    steps: list[str] = []

    async def command() -> None:
        loop = asyncio.get_running_loop()
        never = asyncio.Event()
        try:
            loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
            await never.wait()
        except asyncio.CancelledError:
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("the step went on")
            await never.wait()

    with pytest.raises(KeyboardInterrupt):
        eventloop.run(command())
    assert steps == ["the step went on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_the_loop_has_not_taken_is_followed_by_one_at_once() -> None:
    # The loop's thread held (a blocking read): the first is never taken, and a second must
    # still interrupt the command, as Python's own handler does.
    steps: list[str] = []

    async def command() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        steps.append("the first one waits for the loop")
        os.kill(os.getpid(), signal.SIGINT)
        steps.append("the second one waited too")

    with pytest.raises(KeyboardInterrupt):
        eventloop.run(command())
    assert steps == ["the first one waits for the loop"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("loop_name", ["uvloop", "asyncio"])
def test_a_ctrl_c_not_taken_then_raised_in_another_task_leaves_no_unhandled_error(
    loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loop's thread held in a step of a task the command started (its log line to a full
    # stderr): the second Ctrl-C's KeyboardInterrupt ended that task, not the command's; the
    # first one, taken by asyncio.run's clean-up, then cancelled the command, which ended with
    # its exception: "unhandled exception during asyncio.run() shutdown", with a traceback.
    monkeypatch.setenv(eventloop.ENV, loop_name)
    seen: list[str] = []

    async def held() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    async def command() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: seen.append(context["message"]))
        await asyncio.create_task(held())

    with pytest.raises(KeyboardInterrupt):
        eventloop.run(command())
    assert seen == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
