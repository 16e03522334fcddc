"""Exit codes of every command (sysexits.h) and the errors that commands raise to choose one.

Defined once here: cli.py maps the errors to codes; commands return a code or raise, never exit.
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 2  # argparse's own
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78
EX_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EX_TERMINATED = 143  # 128 + SIGTERM (the console script then ends by the signal itself)

# A `ccnow` action line's codes, as its --help says them: one refused wins over the rest.
CCNOW_ACTION_EXITS = (
    "exit: 0 every command done; 65 bad input, or one refused (also when others are queued, "
    "sending or uncertain: a person must look; stderr says which are left to do); 75 none "
    "refused, one queued (sent by the daemon or the next ccnow line), sending or uncertain "
    "(ccnow resolve), or the store is held by a process without [api]; 78 the daemon "
    "refused this config's [api] token"
)


class Terminated(Exception):
    """SIGTERM ended a command, as Ctrl-C does (eventloop.ended_by_sigterm)."""


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit 2)."""


class DataError(Exception):
    """Input data (order ids, files) that is malformed (exit 65)."""


class TempFailure(Exception):
    """Something worth trying again later (exit 75)."""


class OutputError(Exception):
    """Standard output cannot be written (a full disk, /dev/full, an I/O error): exit 74. A
    reader that left (a closed pipe) is no failure: the command ends quietly with 0."""
