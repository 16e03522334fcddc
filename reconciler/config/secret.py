"""Secrets: a value that never shows itself, read from the key, `<key>_file`, env or systemd
credentials."""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from ..stdio import NotReadHere, read_bounded
from .errors import ConfigError
from .table import Table, control_problem

_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}")
# The keys a secret is given in inline (their `_file` twins name files).
_SECRET_KEYS = frozenset(
    {"api_key", "password", "notification_token", "secret", "previous_secret", "token"}
)
# How the environment variables that hold secrets end (RECONCILER_CCV_API_KEY,
# ..._SINK_X_SECRET): their values are never echoed, and a command sink's program gets none.
SECRET_ENV_ENDS = ("_KEY", "_PASSWORD", "_TOKEN", "_SECRET")
# A character file names seldom hold and secrets often do (`+&=%` of a password, base64's `+=`).
_UNLIKE_A_FILE_NAME = re.compile(r"[^\w ./~-]")


class Secret:
    """A credential that never shows itself in repr(), str() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself; call only where it goes on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class MissingSecret(Secret):
    """A secret the config was loaded without (a command that asks no provider, signs nothing
    and sends to no sink): reveal() raises the ConfigError that loading it would have raised,
    so a command that does use it after all fails as if it had been required."""

    __slots__ = ("_error",)

    def __init__(self, error: ConfigError) -> None:
        super().__init__("")
        self._error = error

    def reveal(self) -> str:
        raise ConfigError(self._error.file, self._error.key, self._error.problem)

    def __repr__(self) -> str:
        return "Secret(missing)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return id(self)


class _Unreadable(ConfigError):
    """A secret's file that cannot be read (missing, or another user's); `missing`: no file is
    there."""

    def __init__(self, file: str, key: str, problem: str, *, missing: bool = False) -> None:
        super().__init__(file, key, problem)
        self.missing = missing


# Far above any key, password or token; /dev/zero or a log file named by mistake stops here.
MAX_SECRET_FILE_BYTES = 64 * 1024


def env_word(name: str) -> str:
    """Spell an account or sink name as it appears inside an environment variable name."""
    return name.upper().replace("-", "_")


def secret_names(source: str, name: str, single: bool, word: str) -> tuple[list[str], list[str]]:
    """Env variables and systemd credential names tried, in order, for an account's secret."""
    credential_word = word.replace("_", "-")
    # Every account has its own names, "default" too (RECONCILER_CCNOW_DEFAULT_PASSWORD), whether
    # the config writes `name = "default"` or leaves it out: both are the account `default`.
    env = [f"RECONCILER_{source.upper()}_{env_word(name)}_{word.upper()}"]
    credentials = [f"{source}-{name}-{credential_word}"]
    # The plain names belong to the "default" account, or to the only one there is.
    if name == "default" or single:
        env.append(f"RECONCILER_{source.upper()}_{word.upper()}")
        credentials.append(f"{source}-{credential_word}")
    return env, credentials


def min_length(length: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if len(value) >= length else f"must be at least {length} characters"

    return check


def token_problem(value: str) -> str | None:
    # The token is a URL path segment: keep it to characters that need no quoting.
    return None if _TOKEN.fullmatch(value) else "must be at least 16 characters of A-Z a-z 0-9 _ -"


def api_token_problem(value: str) -> str | None:
    # The API compares the bearer token as the header carries it, which HTTP trims and
    # clients send as latin-1 or ASCII: a token with white space at an end, or beyond ASCII,
    # passes the config and then authenticates no request (or only some clients' requests).
    if problem := min_length(16)(value):
        return problem
    if value != value.strip():
        return "must not begin or end with white space (no request could carry it)"
    if not value.isascii():
        return "must be ASCII (an HTTP header does not carry other characters alike)"
    return None


def sent_problem(value: str) -> str | None:
    # An API key or password is sent as written: blanks at an end (a paste) passed `check` and
    # surfaced only later, as the provider's 401.
    if value != value.strip():
        return "must not begin or end with white space (it would be sent so and refused)"
    return None


def header_key_problem(value: str) -> str | None:
    # With auth = "bearer" or "header" the key goes into the header as it is: aiohttp sent a
    # key beyond ASCII as UTF-8 bytes, which servers read as latin-1 or refuse.
    if problem := sent_problem(value):
        return problem
    if not value.isascii():
        return "must be ASCII with auth 'bearer' or 'header' (an HTTP header carries it as it is)"
    return None


# Standard Webhooks: a secret is base64 of 24 to 64 random bytes. A shorter key is taken (the
# receivers' libraries take it too) and warned of: it signs events a receiver cannot tell from
# forged ones.
WEBHOOK_KEY_MIN_BYTES = 24


def webhook_key(secret: str) -> bytes:
    """Return the HMAC key of a Standard Webhooks secret (`whsec_` + base64, prefix optional);
    raise ValueError, never naming the value (it is the secret)."""
    raw = secret.removeprefix("whsec_")
    try:
        # Receivers' libraries accept unpadded base64, so do we.
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not base64 after the whsec_ prefix") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def webhook_secret_problem(value: str) -> str | None:
    # The config asks for the prefix; the key is then whatever the sink will sign with.
    if value.startswith("whsec_"):
        with contextlib.suppress(ValueError):
            webhook_key(value)
            return None
    return "must be 'whsec_' followed by base64"


def inline_secrets(data: object) -> set[str]:
    """The values given inline to a secret key anywhere in a parsed TOML document."""
    found: set[str] = set()
    # A loop, not recursion: the parser takes deeper nesting than Python's stack would here.
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _SECRET_KEYS and isinstance(value, str) and value:
                    found.add(value)
                else:
                    todo.append(value)
        elif isinstance(item, list):
            todo.extend(item)
    return found


def _may_be_a_secret(given: str, known: set[str], base_dir: Path) -> bool:
    """Whether a `*_file` value naming no file looks like the secret itself (put there by
    mistake): one the config has elsewhere, the webhook secret's prefix, a value that starts
    as a path does (`/`, `./`, `../`, `~`) but whose directory is missing or the filesystem
    root (base64 keys start with `/` too: `/Zq9+x=7SePw0rd`), or else a text no one names a
    file like (a sign that file names seldom hold, or 16 characters or more that mix letters
    and digits, with no extension). A `/` inside is no path's mark: base64 keys hold it. A
    path in an existing directory is shown: its signs are a unit's
    (`reconciler@shop.service`, `+`, `:`)."""
    if given in known or any(len(s) >= 8 and s in given for s in known):
        return True
    if given.startswith("whsec_"):
        return True
    if given.startswith(("/", "./", "../", "~")):
        return not _in_a_directory(given, base_dir)
    return _UNLIKE_A_FILE_NAME.search(given) is not None or (
        "." not in given
        and len(given) >= 16
        and any(c.isdigit() for c in given)
        and any(c.isalpha() for c in given)
    )


def _in_a_directory(given: str, base_dir: Path) -> bool:
    """Whether `given` (`~` expanded, as the user meant it) names a file of an existing
    directory other than the filesystem root, where no one keeps a secret."""
    try:
        directory = (base_dir / Path(given).expanduser()).parent.resolve()
        # os.stat, not Path.is_dir(): that raises for a directory this user may not search.
        is_dir = stat.S_ISDIR(os.stat(directory).st_mode)
    except (RuntimeError, OSError):
        # No home directory to expand `~` or `~user` to, or none to be looked at here.
        return False
    return is_dir and directory != Path(directory.anchor)


class SecretReader:
    """Resolves the secrets of one config file and remembers the files that held them.

    `optional`: a secret that is not given, or whose file cannot be read, is a MissingSecret
    instead of an error. A secret that is given is checked all the same."""

    def __init__(
        self, file: str, base_dir: Path, env: Mapping[str, str], *, optional: bool = False
    ) -> None:
        self.file = file
        self.base_dir = base_dir
        self.env = env
        self.secrets_optional = optional
        # Each file a secret was read from, and the key that named it first.
        self.secret_files: dict[Path, str] = {}
        # Values a `*_file` that names no file must not be echoed as (the loader adds those
        # given inline): the environment's, and each secret read so far.
        self.known = {
            value
            for name, value in env.items()
            if name.startswith("RECONCILER_") and name.endswith(SECRET_ENV_ENDS) and value
        }

    def required(
        self,
        table: Table,
        key: str,
        env: list[str],
        credentials: list[str],
        check: Callable[[str], str | None] | None = None,
    ) -> Secret:
        found = self.optional(table, key, env, credentials, check)
        if found is None:
            error = table.error(
                key,
                f"required (or {key}_file, env {' or '.join(env)}, "
                f"credential {' or '.join(credentials)})",
            )
            if self.secrets_optional:
                return MissingSecret(error)
            raise error
        return found

    def optional(
        self,
        table: Table,
        key: str,
        env: list[str],
        credentials: list[str],
        check: Callable[[str], str | None] | None = None,
    ) -> Secret | None:
        """Resolve a secret: the key, then `<key>_file`, then env, then $CREDENTIALS_DIRECTORY."""
        file_key = f"{key}_file"
        # Both asked for, whichever is given: a census of the keys sees both.
        if all([table.has(key), table.has(file_key)]):
            raise table.error(key, f"give {key} or {file_key}, not both")
        try:
            found = self.find(table, key, env, credentials)
        except _Unreadable as error:
            # Commonly the service's secret file, which the user running `status` may not read.
            if self.secrets_optional:
                return MissingSecret(error)
            raise
        if found is None:
            return None
        # Problems name where the value came from, never the value.
        value, error_key, origin = found
        problem = (
            "must not be empty"
            if not value
            else control_problem(value, strict=True)
            # Only blanks: a paste or a template gone wrong, no provider's key or password.
            or ("must not be only white space" if not value.strip() else None)
            or (check(value) if check else None)
        )
        if problem is not None:
            raise table.error(error_key, problem + origin)
        self.known.add(value)
        return Secret(value)

    def find(
        self, table: Table, key: str, env: list[str], credentials: list[str]
    ) -> tuple[str, str, str] | None:
        """(value, key to blame, where from) of the first source that has the secret."""
        value = table.get(key, str, "a string")
        if value is not None:
            self.secret_files.setdefault(Path(self.file), table.path(key))
            return value, key, ""
        file_key = f"{key}_file"
        if table.has(file_key):
            given = table.string(file_key)
            path = self.base_dir / given
            self.secret_files.setdefault(path, table.path(file_key))
            try:
                return self.read(path, table, file_key), file_key, ""
            except _Unreadable as error:
                if error.missing and _may_be_a_secret(given, self.known, self.base_dir):
                    # The key itself, pasted where its file's path goes: never shown.
                    problem = (
                        "no such file (the value given is not shown: it looks like the secret "
                        f"itself; give {key}, or the path of a file that holds it)"
                    )
                    raise _Unreadable(self.file, table.path(file_key), problem) from None
                raise
        for name in env:
            if name in self.env:
                return self.env[name], key, f" (from env {name})"
        directory = self.env.get("CREDENTIALS_DIRECTORY")
        if directory:
            for name in credentials:
                path = Path(directory) / name
                origin = f" (from credential {name})"
                # os.stat, not Path.exists(): that raises for a directory this user may not
                # search or a name too long, a traceback in every command. Not there is not
                # given; not to be looked at is unreadable (optional: as not given).
                try:
                    os.stat(path)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as exc:
                    raise self.unreadable(path, table, key, exc, origin) from None
                return self.read(path, table, key, origin), key, origin
        return None

    def unreadable(
        self, path: Path, table: Table, key: str, exc: OSError, origin: str
    ) -> _Unreadable:
        problem = f"cannot read {path}: {exc.strerror or type(exc).__name__}{origin}"
        missing = exc.errno in (errno.ENOENT, errno.ENOTDIR)
        return _Unreadable(self.file, table.path(key), problem, missing=missing)

    def read(self, path: Path, table: Table, key: str, origin: str = "") -> str:
        # Errors name the path tried: `~` is not expanded, so "~/key" is beside the config file.
        try:
            data = read_bounded(path, MAX_SECRET_FILE_BYTES)
        except OSError as exc:
            raise self.unreadable(path, table, key, exc, origin) from None
        except NotReadHere as exc:
            raise table.error(key, f"{path} is {exc}{origin}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # The codec's message quotes bytes of the file: never show it.
            raise table.error(key, f"not UTF-8 text{origin}") from None
        # The line ends after it, as `echo` writes one and an editor or `echo >>` more (a blank
        # last line): no secret ends in one. Any other is refused as part of the secret.
        return text.rstrip("\r\n")
