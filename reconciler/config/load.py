"""load_config: one config file read (bounded, UTF-8, TOML) and handed to the Loader."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..stdio import PIPE_WAIT_S, NotReadHere, names_a_descriptor, read_bounded
from .errors import ConfigError
from .loader import Loader
from .schema import Config
from .toml_errors import toml_error
from .where import GONE, NoCurrentDirectory, current_directory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

# Far above any config; /dev/zero, or a FIFO whose writer never stops, is refused at this size.
MAX_CONFIG_FILE_BYTES = 1 << 20


def load_config(
    path: str | Path, *, secrets_optional: bool = False, pipe_wait_s: float = PIPE_WAIT_S
) -> Config:
    """Read and validate a config file; raise ConfigError naming the key on any problem.

    `secrets_optional`, for a command that asks no provider, signs nothing and sends to no sink:
    a secret that is not given, or whose file this user cannot read, loads as a MissingSecret,
    which raises the ConfigError it stands for if it is used after all. Every other key, and
    every secret that is given, is checked as always. A FIFO no writer opens within
    `pipe_wait_s` is refused as one nothing wrote to."""
    file = str(path)
    # Relative paths in the file mean "next to the file", whatever the daemon's cwd is later;
    # in a config read from a descriptor (`<(sops -d ...)`: /dev/fd/63; /dev/stdin), the
    # current directory's. A named pipe is a file beside others. Known before it is read: a
    # pipe is not read for nothing.
    try:
        here = Path(path) if Path(path).is_absolute() else current_directory() / path
        base_dir = current_directory() if names_a_descriptor(here) else here.parent
    except NoCurrentDirectory:
        # A traceback (exit 70) before, from a shell left in a directory removed since.
        if Path(path).is_absolute():
            problem = f"a config read from a descriptor has its relative paths in {GONE}"
        else:
            problem = f"cannot read file: a path relative to {GONE}: give its absolute path"
        raise ConfigError(file, "-", problem) from None
    try:
        data = read_bounded(Path(path), MAX_CONFIG_FILE_BYTES, pipes=True, pipe_wait_s=pipe_wait_s)
    except OSError as exc:
        raise ConfigError(file, "-", f"cannot read file: {exc.strerror or exc}") from None
    except NotReadHere as exc:
        raise ConfigError(file, "-", str(exc)) from None
    if (wide := _wide_encoding(data)) is not None:
        # UTF-16 without a BOM is valid UTF-8 (NULs between ASCII), which tomllib called an
        # "Invalid statement (at line 1, column 1)", nothing on the encoding.
        raise ConfigError(file, "-", f"not UTF-8 text (it looks like {wide}): save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(file, "-", "not UTF-8 text") from None
    try:
        # Windows editors (Notepad) begin a UTF-8 file with a BOM, which TOML does not allow.
        table = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, *toml_error(text, str(exc))) from None
    except RecursionError:
        # tomllib recurses per level of nesting: `x = [[[[...]]]]` was a traceback (exit 70).
        raise ConfigError(file, "-", "invalid TOML: it nests too deep") from None
    return Loader(file, base_dir, os.environ, secrets_optional=secrets_optional).config(table)


def _wide_encoding(data: bytes) -> str | None:
    """The encoding ("UTF-16", "UTF-32") `data` begins as one does (a BOM, or a NUL beside the
    first ASCII character, as JSON's RFC 4627 tells them apart), else None. No TOML text in
    UTF-8 begins with a NUL, so nothing readable is refused."""
    head = data[:4]
    if head in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff") or (
        len(head) == 4 and (head[:3] == b"\x00\x00\x00" or head[1:] == b"\x00\x00\x00")
    ):
        return "UTF-32"
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (
        len(head) >= 2 and (head[0] == 0) != (head[1] == 0)
    ):
        return "UTF-16"
    return None
