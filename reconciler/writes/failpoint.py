"""Test-only crash points in the writes: the crash tests stop a writer exactly between two of
its steps (recorded, sent, answered) and check what the next start makes of it."""

from __future__ import annotations

import os
import signal


def failpoint(name: str) -> None:
    """SIGKILL this process at the named point when RECONCILER_FAILPOINT names it; unset in
    production."""
    if os.environ.get("RECONCILER_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
