"""Whether another process holds a `flock` on a file, told without taking it: Linux lists every
lock in /proc/locks. An older release's writer holds its lock file by a flock alone, with no
byte-range lock beside it for `fcntl`'s GETLK to see (store/ranges.py)."""

from __future__ import annotations

import os
from pathlib import Path

PROC_LOCKS = Path("/proc/locks")


def flocked(fd: int, *, listing: Path = PROC_LOCKS) -> bool:
    """Whether a flock's write lock is held on the file open at `fd` (this process's own
    included, as GETLK's answer includes them). A listing line names the file by device and
    inode: the device is the file system's, which on btrfs is not the subvolume's that
    stat() gives, so a line of the inode whose holder is the process the file's first line
    names (as every release's writer writes it) counts too. False where nothing can say
    (no /proc: another system, or a /proc hidden)."""
    st = os.fstat(fd)
    said = os.pread(fd, 32, 0).decode(errors="replace").strip()
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    try:
        text = listing.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 2451 00:1b:1146849 0 EOF"; a waiter's line starts "1: ->".
        words = line.split()
        if len(words) < 6 or words[1] != "FLOCK" or words[3] != "WRITE":
            continue
        where = words[5].rsplit(":", 1)
        if len(where) != 2 or where[1] != str(st.st_ino):
            continue
        if where[0] == device or words[4] == said:
            return True
    return False
