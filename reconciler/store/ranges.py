"""The writer lock's byte-range locks (`fcntl`), which another process can ask about without
taking anything, as it cannot a `flock`: the whole lock file's, and one byte of the database
file whose place says the holder's process id."""

from __future__ import annotations

import fcntl
import os
import struct
import sys

# Open file description locks (Linux): owned by the open file, as flock's lock is, and seen by
# a GETLK from any other open file, this process's included. Elsewhere POSIX record locks:
# owned by the process, which a GETLK of its own does not see, and dropped when it closes any
# descriptor of the file; no writer opens its own lock file twice.
SETLK: int = getattr(fcntl, "F_OFD_SETLK", fcntl.F_SETLK)
GETLK: int = getattr(fcntl, "F_OFD_GETLK", fcntl.F_GETLK)
# struct flock: Linux's field order, else the BSDs' (macOS)
_FLOCK, _TYPE_AT, _START_AT = (
    ("hhqqi", 0, 2) if sys.platform.startswith("linux") else ("qqihh", 3, 0)
)

# Where the database file's byte is: `PID_BYTES` bytes from `PID_AT` on, the holder's at
# PID_AT + its process id (an open file description's lock has no pid of its own to report).
# Below SQLite's locks (from 1 GiB on, whatever the file's size), so none of its ever meets it.
PID_AT = 1 << 29
PID_BYTES = 1 << 22  # Linux's largest process id is below 2**22


def lock_range(fd: int, command: int, lock_type: int, start: int = 0, length: int = 0) -> int:
    """Run one fcntl lock command on a range (length 0: to the end of the file, whatever it
    grows to); return the lock type it answers with (GETLK: F_UNLCK when nothing would stand in
    the way). Raises OSError as fcntl does (BlockingIOError: held elsewhere)."""
    return _fcntl(fd, command, lock_type, start, length)[0]


def lock_pid(fd: int) -> None:
    """Take the database file's byte of this process's id (while the writer lock's flock on the
    file is held: no other writer holds one); a process id beyond the range takes the first
    byte, which names none. A read lock: the writer opens the file read-only, and a write
    lock, which another asks about, conflicts with it all the same."""
    pid = os.getpid()
    lock_range(fd, SETLK, fcntl.F_RDLCK, PID_AT + (pid if pid < PID_BYTES else 0), 1)


def unlock_pid(fd: int) -> None:
    """Let go of the process id's byte (the descriptor stays open)."""
    lock_range(fd, SETLK, fcntl.F_UNLCK, PID_AT, PID_BYTES)


def holder(fd: int) -> tuple[bool, int | None]:
    """Whether another holds a byte of the process id's range of the file open at `fd`, and
    which process id its place says (None: the first byte, or a lock not of the range)."""
    lock_type, start = _fcntl(fd, GETLK, fcntl.F_WRLCK, PID_AT, PID_BYTES)
    if lock_type == fcntl.F_UNLCK:
        return False, None
    pid = start - PID_AT
    return True, pid if 0 < pid < PID_BYTES else None


def holder_pid(fd: int) -> int | None:
    """The process id another's byte says, of the file open at `fd` (None: none said, or the
    lock cannot be asked)."""
    try:
        return holder(fd)[1]
    except OSError:
        return None


def _fcntl(fd: int, command: int, lock_type: int, start: int, length: int) -> tuple[int, int]:
    fields = [0, 0, 0, 0, 0]  # OFD locks want l_pid 0; whence 0: from the file's start
    fields[_TYPE_AT] = lock_type
    fields[_START_AT] = start
    fields[_START_AT + 1] = length
    # Room to spare: the kernel's struct may be padded beyond the fields packed here.
    packed = struct.pack(_FLOCK, *fields).ljust(64, b"\0")
    answer = struct.unpack_from(_FLOCK, fcntl.fcntl(fd, command, packed))
    return int(answer[_TYPE_AT]), int(answer[_START_AT])
