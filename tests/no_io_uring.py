"""Run `python -m reconciler ARGS` where io_uring is refused with EPERM, as the systemd units'
`SystemCallFilter=@system-service` with `SystemCallErrorNumber=EPERM` refuse it.

A seccomp filter (Linux, x86-64) is installed in this process and kept across exec. Exits 3 when
the filter does not take hold, so that a test cannot pass without it.

    python tests/no_io_uring.py ARGS...
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
IO_URING_SETUP = 425
IO_URING_SYSCALLS = (IO_URING_SETUP, 426, 427)  # and io_uring_enter, io_uring_register


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _program() -> bytes:
    load_arch = _insn(0x20, 0, 0, 4)  # A = seccomp_data.arch
    load_nr = _insn(0x20, 0, 0, 0)  # A = seccomp_data.nr
    allow = _insn(0x06, 0, 0, SECCOMP_RET_ALLOW)
    refuse = _insn(0x06, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM)
    n = len(IO_URING_SYSCALLS)
    insns = [load_arch, _insn(0x15, 1, 0, AUDIT_ARCH_X86_64), allow, load_nr]
    # Each match jumps to `refuse`, past the remaining tests and `allow`.
    insns += [_insn(0x15, n - i, 0, nr) for i, nr in enumerate(IO_URING_SYSCALLS)]
    insns += [allow, refuse]
    return b"".join(insns)


def refuse_io_uring() -> None:
    """Install the filter in this process; raise OSError when the kernel refuses it."""
    libc = ctypes.CDLL(None, use_errno=True)
    program = _program()
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HxxxxxxP", len(program) // 8, ctypes.addressof(buffer))
    fprog_buffer = ctypes.create_string_buffer(fprog)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog_buffer, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(IO_URING_SETUP, 1, None) != -1 or ctypes.get_errno() != errno.EPERM:
        sys.exit(3)


if __name__ == "__main__":
    refuse_io_uring()
    os.execv(sys.executable, [sys.executable, "-m", "reconciler", *sys.argv[1:]])
