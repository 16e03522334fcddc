"""Whether another process holds a `flock` on a file, told without taking it: Linux lists every
lock in /proc/locks. An older release's writer holds its lock file by a flock alone, with no
byte-range lock beside it for `fcntl`'s GETLK to see (store/ranges.py)."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def flocked(fd: int, *, proc: Path = PROC) -> bool:
    """Whether a flock's write lock is held on the file open at `fd` (this process's own
    included, as GETLK's answer includes them). A listing line names the file by device and
    inode: the device is the file system's, which on btrfs is not the subvolume's that
    stat() gives, so a line of the inode whose holder is the process the file's first line
    names (as every release's writer writes it) counts too, when that process has this very
    file open (`proc`/<pid>/fd). False where nothing can say (no /proc: another system, or a
    /proc hidden; a holder in another pid namespace, as another container, whose flock
    /proc/locks does not list)."""
    st = os.fstat(fd)
    said = os.pread(fd, 32, 0).decode(errors="replace").strip()
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    try:
        text = (proc / "locks").read_text(errors="replace")
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
        if where[0] == device or (words[4] == said and _holds(proc, said, st)):
            return True
    return False


def _holds(proc: Path, pid: str, st: os.stat_result) -> bool:
    """Whether process `pid` has the file of `st` open, as its /proc/<pid>/fd links lead to.
    An inode number alone does not say the file: a snapshot or block copy mounted elsewhere
    keeps the original's, and its lock file names the original's holder. Not confirmed when
    they cannot be read (another user's process, one in another pid namespace, gone)."""
    try:
        links = list((proc / pid / "fd").iterdir())
    except OSError:
        return False
    for link in links:
        try:
            target = os.stat(link)  # the file it leads to, as stat() names it here
        except OSError:
            continue  # closed meanwhile, or not to be read
        if (target.st_dev, target.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False
