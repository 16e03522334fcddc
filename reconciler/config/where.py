"""Which config file a command reads: `--config`, else $RECONCILER_CONFIG, else
./reconciler.toml; and the store a config without `[store] path` names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError

ENV = "RECONCILER_CONFIG"
# Where a relative path would be. getcwd(3) fails alike for a directory deleted and for one
# outside this process's root or mounts (a lazily unmounted bind mount, a chroot without chdir).
GONE = "the current directory, which cannot be named (deleted, or outside this process's mounts)"


def config_path(arg: str | None, env: Mapping[str, str] | None = None) -> Path:
    """Return the config file to use (`env`: os.environ). One given empty (`--config ""`,
    `RECONCILER_CONFIG=`: a unit's `--config ${RECONCILER_CONFIG}` with the variable unset) is
    a config error naming where it came from: it fell through to the next choice, and another
    file than the one meant was read without a word."""
    env = os.environ if env is None else env
    if arg is not None:
        given, where = arg, "--config"
        rest = f"or leave --config out for ${ENV}, else ./reconciler.toml"
    elif (value := env.get(ENV)) is not None:
        given, where, rest = value, ENV, "or unset it for ./reconciler.toml"
    else:
        return Path("reconciler.toml")
    if not given:
        raise ConfigError("''", where, f"is empty: name the config file, {rest}")
    return Path(given)


class NoCurrentDirectory(Exception):
    """The current directory cannot be named: deleted (a shell left standing in a directory
    removed since), or outside this process's root or mounts. No relative path can be made
    absolute, so none is trusted to name the file meant."""


def current_directory() -> Path:
    """Return the current directory; raise NoCurrentDirectory when it cannot be named."""
    try:
        return Path.cwd()
    except FileNotFoundError:  # getcwd(3) on Linux: ENOENT, unlinked or unreachable
        raise NoCurrentDirectory from None


def default_store_path(env: Mapping[str, str]) -> Path:
    """The store of a config without `[store] path` (and of `reconciler demo`):
    $STATE_DIRECTORY/reconciler.db, else ./reconciler.db (NoCurrentDirectory: none is there)."""
    # systemd's StateDirectory= may list several directories; the first is ours.
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state or current_directory()) / "reconciler.db"
