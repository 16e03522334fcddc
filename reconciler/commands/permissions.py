"""Warn when a file that holds a secret can be read by other users, as ssh does for keys."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterable
from pathlib import Path

from ..logs import fields

log = logging.getLogger("reconciler.config")

_READABLE_BY_OTHERS = stat.S_IRGRP | stat.S_IROTH


def readable_by_others(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """Return (path, permission bits) of each file that its group or other users may read."""
    found: list[tuple[Path, int]] = []
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # the config loader read it a moment ago; nothing to warn about
        if mode & _READABLE_BY_OTHERS:
            found.append((path, stat.S_IMODE(mode)))
    return found


def warn_readable_secrets(paths: Iterable[Path]) -> None:
    """Log one warning per secret-holding file that others may read; never the secret."""
    for path, mode in readable_by_others(paths):
        log.warning(
            "config.secret_readable",
            extra=fields(
                file=str(path),
                mode=f"{mode:04o}",
                hint=f"holds a secret and is readable by others: chmod go-rwx {path}",
            ),
        )
