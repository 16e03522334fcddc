"""Run a program whose children cannot finish their exec until the test lets them: a real exec
that hangs, as one of a program on a hung network file system does, without root.

`python -m tests.exec_gate FD PROGRAM ARGS...` puts this process under a seccomp filter that
hands every execve to a supervisor (a child forked before the filter), then execs PROGRAM. The
supervisor lets PROGRAM's own execs through; the first execve of any other process (a child
PROGRAM starts) waits in the kernel, its parent's fork+exec with it, until the test opens the
gate: the supervisor writes `held PID` to the socket FD and lets it (and every exec after it)
go on when a byte comes back, or the socket closes. Linux on x86_64 or aarch64, kernel >= 5.5
(`SECCOMP_USER_NOTIF_FLAG_CONTINUE`); `gate_problem()` says why not here.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import platform
import select
import socket
import struct
import subprocess
import sys
from functools import cache

# <linux/seccomp.h>, <linux/filter.h>, <linux/audit.h>
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_SECCOMP_RET_USER_NOTIF = 0x7FC00000
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
_NOTIF_SIZE = 80  # struct seccomp_notif: id, pid, flags, struct seccomp_data (64)
_IOCTL_NOTIF_RECV = 0xC0000000 | (_NOTIF_SIZE << 16) | (ord("!") << 8) | 0
_IOCTL_NOTIF_SEND = 0xC0000000 | (24 << 16) | (ord("!") << 8) | 1
# machine: (AUDIT_ARCH_*, seccomp syscall number, execve, execveat)
_ARCHES = {
    "x86_64": (0xC000003E, 317, 59, 322),
    "aarch64": (0xC00000B7, 277, 221, 281),
}


@cache
def gate_problem() -> str | None:
    """Say why no exec can be held here, or None. A container whose own seccomp policy forbids
    new filters (or the listener flag) is found by trying one in a child, not assumed."""
    if sys.platform != "linux" or platform.machine() not in _ARCHES:
        return f"seccomp user notification is wired here for Linux on {sorted(_ARCHES)} only"
    release = tuple(int(part) for part in platform.release().split(".")[:2] if part.isdigit())
    if release < (5, 5):
        return f"kernel {platform.release()} has no SECCOMP_USER_NOTIF_FLAG_CONTINUE"
    tried = subprocess.run(
        [sys.executable, "-m", "tests.exec_gate", "--try"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if tried.returncode != 0:
        said = (tried.stderr.strip().splitlines() or ["no reason given"])[-1]
        return f"no seccomp listener can be installed here: {said}"
    return None


class Gate:
    """The test's end of the gate: `argv(...)` runs a program under it (give the program
    `fd` with pass_fds, then call `handed`); closing it opens the gate for good."""

    def __init__(self) -> None:
        self._ours, self._theirs = socket.socketpair()
        self._ours.setblocking(False)
        self.fd = self._theirs.fileno()

    def argv(self, *program: str) -> list[str]:
        """The command that runs `program` (a path, then its words) under the gate."""
        return [sys.executable, "-m", "tests.exec_gate", str(self.fd), *program]

    def handed(self) -> None:
        """Close the program's end here once the program holds its own copy."""
        self._theirs.close()

    async def held(self, timeout_s: float) -> int:
        """Return the pid whose exec the gate holds, once it does."""
        loop = asyncio.get_running_loop()
        said = b""
        while not said.endswith(b"\n"):
            chunk = await asyncio.wait_for(loop.sock_recv(self._ours, 64), timeout_s)
            assert chunk, f"the gate ended without holding an exec ({said!r})"
            said += chunk
        word, pid = said.split()
        assert word == b"held", said
        return int(pid)

    def open(self) -> None:
        """Let the held exec, and every one after it, go on."""
        self._ours.close()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *_: object) -> None:
        self._theirs.close()
        self._ours.close()


def _filter() -> bytes:
    arch, _, execve, execveat = _ARCHES[platform.machine()]

    def op(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    ld_w_abs, jeq_k, ret_k = 0x20, 0x15, 0x06
    return b"".join(
        (
            op(ld_w_abs, 0, 0, 4),  # seccomp_data.arch
            op(jeq_k, 0, 4, arch),  # another ABI: allowed (nothing here runs one)
            op(ld_w_abs, 0, 0, 0),  # seccomp_data.nr
            op(jeq_k, 2, 0, execve),
            op(jeq_k, 1, 0, execveat),
            op(ret_k, 0, 0, _SECCOMP_RET_ALLOW),
            op(ret_k, 0, 0, _SECCOMP_RET_USER_NOTIF),
        )
    )


def _install() -> int:
    """Put this process under the filter; return the listener's descriptor."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    code = _filter()
    program = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HxxxxxxQ", len(code) // 8, ctypes.addressof(program))
    fprog_buf = ctypes.create_string_buffer(fprog, len(fprog))
    nr = _ARCHES[platform.machine()][1]
    libc.syscall.restype = ctypes.c_long
    listener = libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
        ctypes.c_long(_SECCOMP_FILTER_FLAG_NEW_LISTENER),
        fprog_buf,
    )
    if listener < 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)")
    return int(listener)


def _supervise(listener: int, test: socket.socket, program_pid: int) -> None:
    held = False  # once the gate opened, every exec goes on
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    while True:
        events = dict(poller.poll())
        if not events.get(listener, 0) & select.POLLIN:
            return  # every process under the filter is gone
        notif = bytearray(_NOTIF_SIZE)  # the kernel wants it zeroed
        try:
            fcntl.ioctl(listener, _IOCTL_NOTIF_RECV, notif)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINTR):
                continue  # its caller died (a kill) before we took it
            raise
        notif_id, pid = struct.unpack_from("QI", notif)
        if pid != program_pid and not held:
            held = True
            test.sendall(f"held {pid}\n".encode())
            test.recv(1)  # the gate opens (or the test is gone)
        answer = struct.pack("QqiI", notif_id, 0, 0, _SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        try:
            fcntl.ioctl(listener, _IOCTL_NOTIF_SEND, bytearray(answer))
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # its caller died meanwhile
                raise


def main(argv: list[str]) -> None:
    if argv == ["--try"]:  # gate_problem's question: may this process install the filter?
        os.close(_install())
        return
    test_fd, program = int(argv[0]), argv[1:]
    ours, theirs = socket.socketpair()
    supervisor = os.fork()
    if supervisor == 0:  # before the filter: its own execs (none) would wait on itself
        ours.close()
        # The program's stdin and stdout are not the supervisor's to hold open: a test reading
        # the program's output to its end would wait for the supervisor too.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        _, fds, _, _ = socket.recv_fds(theirs, 1, 1)
        try:
            _supervise(fds[0], socket.socket(fileno=test_fd), os.getppid())
        finally:
            os._exit(0)
    theirs.close()
    os.close(test_fd)  # the supervisor's alone: the test sees it close when that ends
    listener = _install()
    socket.send_fds(ours, [b"l"], [listener])
    os.close(listener)
    ours.close()
    os.execv(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
