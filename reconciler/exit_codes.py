"""The command line's exit codes (sysexits.h), one list for every command."""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 2  # argparse's own
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78
