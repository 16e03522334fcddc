"""Which config file a command reads: `--config`, else $RECONCILER_CONFIG, else
./reconciler.toml."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError

ENV = "RECONCILER_CONFIG"


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
