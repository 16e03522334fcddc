"""Reading `[[sinks]]`: one config type per sink kind, each table's keys checked against its kind,
and default names (the kind) that step aside for explicit ones."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from ..paths import STORE_FILES, beside
from ..stdio import names_a_descriptor
from .errors import ConfigError
from .keys import SINK_TYPES
from .names import unique_name
from .schema import (
    CommandSinkConfig,
    JsonlSinkConfig,
    LogSinkConfig,
    SinkConfig,
    WebhookSinkConfig,
)
from .secret import SecretReader, env_word, webhook_secret_problem
from .table import KeyCensus, Table, file_path
from .values import type_name


class SinkReader:
    """Reads the `[[sinks]]` tables of one file; relative paths are beside the file."""

    def __init__(
        self,
        file: str,
        base_dir: Path,
        secrets: SecretReader,
        *,
        store_path: Path,
        config_path: Path | None,
        census: bool = False,
    ) -> None:
        self.file = file
        self.base_dir = base_dir
        self.secrets = secrets
        self.store_path = store_path
        self.config_path = config_path  # None: read from a descriptor, in no directory
        # A census of a sink's keys (Loader.census): its stand-in path is judged against no
        # file, so that the real store or config cannot refuse it.
        self.census = census

    def sinks(self, top: Table) -> tuple[SinkConfig, ...]:
        """Read every `[[sinks]]` table, in the file's order."""
        raw = top.value("sinks")
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise top.error(
                "sinks", f"expected an array of tables ([[sinks]]), got {type_name(raw)}"
            )
        typed: list[tuple[Table, Literal["log", "jsonl", "webhook", "command"]]] = []
        for index, item in enumerate(raw):
            key = f"sinks[{index}]"
            if not isinstance(item, dict):
                raise ConfigError(self.file, key, f"expected a table, got {type_name(item)}")
            table = top.child(key, item)
            kind = table.choice("type", SINK_TYPES)
            for unknown in table.unknown(self.keys(kind)):
                # A key another kind reads (`url` in a jsonl sink) says which kind it is not.
                foreign = any(unknown in self.keys(other) for other in SINK_TYPES)
                raise table.error(
                    unknown, f"not a key of a {kind} sink" if foreign else "unknown key"
                )
            typed.append((table, kind))
        # Explicit names first, so that a default name steps aside instead of clashing.
        seen: dict[str, str] = {}
        explicit = {id(table): unique_name(table, seen) for table, _ in typed if table.has("name")}
        # One log sink at most: the log gets every event once (a second wrote each line twice,
        # and an alert keyed on the log fired twice).
        logs = [table for table, kind in typed if kind == "log"]
        if len(logs) > 1:
            raise logs[1].error(
                "type",
                f"a second log sink ({logs[0].key} is one): the log gets every event once; "
                "remove one",
            )
        sinks = []
        files: list[tuple[Path, Table]] = []
        for table, kind in typed:
            name = explicit.get(id(table))
            if name is None:
                name, number = kind, 2
                while env_word(name) in seen:
                    name, number = f"{kind}-{number}", number + 1
                seen[env_word(name)] = name
            sink = self.sink(table, kind, name)
            if isinstance(sink, JsonlSinkConfig):
                # Two sinks' batches would interleave (on a FIFO, past PIPE_BUF: within a
                # line), and one's taking back a failed batch would cut the other's lines.
                for path, other in files:
                    if same_file(sink.path, path):
                        raise table.error(
                            "path",
                            f"{sink.path} is the file {other.path('path')} names; "
                            "the sink needs a file of its own",
                        )
                files.append((sink.path, table))
            sinks.append(sink)
        for index, sink in enumerate(sinks):  # now that every secret is read, the sinks' too
            self.secret_sink(index, sink)
        if not any(kind == "log" for _, kind in typed):
            # The log sink is always there; without one configured it is the built-in `log`.
            for table, _ in typed:
                if env_word(explicit.get(id(table)) or "") == env_word("log"):
                    raise table.error(
                        "name",
                        "'log' is the name of the built-in log sink; choose another name",
                    )
        return tuple(sinks)

    def keys(self, kind: Literal["log", "jsonl", "webhook", "command"]) -> frozenset[str]:
        """The keys a sink of `kind` may hold: those `sinks` and `sink` ask for, on a table
        with nothing given (read by a census reader of its own, with no environment)."""
        census = KeyCensus(self.file)
        secrets = SecretReader(self.file, self.base_dir, {}, optional=True)
        reader = SinkReader(
            self.file,
            self.base_dir,
            secrets,
            store_path=self.base_dir / "census",
            config_path=None,
            census=True,
        )
        census.choice("type", SINK_TYPES, kind)
        census.has("name")
        reader.sink(census, kind, "census")
        return census.asked

    def sink(
        self,
        table: Table,
        kind: Literal["log", "jsonl", "webhook", "command"],
        name: str,
    ) -> SinkConfig:
        """Read one sink's table as the config type of its kind."""
        specific: SinkConfig
        if kind == "jsonl":
            path = file_path(self.base_dir, table, "path", look=not self.census)
            if not self.census and (taken := self.own_file(path)) is not None:
                raise table.error("path", f"{path} is {taken}; the sink needs a file of its own")
            specific = JsonlSinkConfig(name=name, path=path)
        elif kind == "webhook":
            env = [f"RECONCILER_SINK_{env_word(name)}_SECRET"]
            specific = WebhookSinkConfig(
                name=name,
                url=table.url("url"),
                secret=self.secrets.required(
                    table, "secret", env, [f"sink-{name}-secret"], webhook_secret_problem
                ),
            )
        elif kind == "command":
            specific = CommandSinkConfig(name=name, command=self.command(table))
        else:
            specific = LogSinkConfig(name=name)
        timeout = table.timeout("timeout", "15s")
        retry_min, retry_max = table.duration_range("retry_min", "5s", "retry_max", "1h")
        max_age = table.duration("max_age", "3d", positive=True)
        if table.has("retry_min") and retry_min > max_age:
            # The first retry would come after the event's max_age: it dead-letters an event
            # retry_min after its first failure, not max_age after its creation.
            raise table.error("retry_min", "must not be more than max_age")
        return replace(
            specific,
            timeout_s=timeout,
            retry_min_s=retry_min,
            retry_max_s=retry_max,
            max_age_s=max_age,
        )

    def own_file(self, path: Path) -> str | None:
        """Say which of reconciler's own files `path` is, after links, or None. Events appended
        to the store's files were lost (SQLite truncates them), and to the config file they
        made it invalid TOML at the next start."""
        own = [
            (beside(store, suffix), what)
            # SQLite and the writer's lock follow a link to the database, history.py does not.
            for store in (self.store_path, Path(os.path.realpath(self.store_path)))
            for suffix, what in STORE_FILES
        ]
        if self.config_path is not None:
            own.append((self.config_path, "this config file"))
        for file, what in own:
            if same_file(path, file):
                return what
        return None

    def secret_sink(self, index: int, sink: SinkConfig) -> None:
        """Refuse a jsonl sink writing into, or a command sink running, a file a secret was
        read from: events appended to a key's file made it no key (a line break), and the next
        start failed (78) until someone mended it by hand."""
        if isinstance(sink, JsonlSinkConfig) and (key := secret_key(self.secrets, sink.path)):
            raise ConfigError(
                self.file,
                f"sinks[{index}].path",
                f"{sink.path} is the file {key} names; the sink needs a file of its own",
            )
        program = sink.command[0] if isinstance(sink, CommandSinkConfig) else ""
        # A bare name is looked up on PATH when run, never a file beside the config.
        if "/" in program and (key := secret_key(self.secrets, Path(program))):
            raise ConfigError(
                self.file,
                f"sinks[{index}].command[0]",
                f"{program} is the file {key} names; a secret's file is no program",
            )

    def command(self, table: Table) -> tuple[str, ...]:
        """Read a command sink's argv: a non-empty list of strings without NUL, the program not
        empty; a program path with a `/` that is relative is beside the file (the daemon's
        current directory is systemd's `/`), a bare name is looked up on PATH when run."""
        value = table.strings("command", "a list of strings (argv)")
        if (nul := nul_word(value)) is not None:
            raise table.error(f"command[{nul}]", "must not contain a NUL character")
        program = value[0]
        if not program:
            raise table.error("command[0]", "must not be empty")
        if "/" in program and not Path(program).is_absolute():
            program = str(self.base_dir / program)
        return (program, *value[1:])


def nul_word(command: Sequence[str]) -> int | None:
    """Return the index of the first word of a command that holds a NUL (None: none). A
    program's argument ends at its first NUL: uvloop ran it with what came before, asyncio
    refused every attempt; the config refuses such a word, a sink made in code never runs it."""
    return next((i for i, word in enumerate(command) if "\0" in word), None)


def secret_key(secrets: SecretReader, path: Path) -> str | None:
    """The key (`ccv.api_key_file`) that named the file a secret was read from which `path`
    is, after links or by inode, or None. The config file, holding a secret given inline, is
    left out: it is refused as "this config file"."""
    files = secrets.secret_files.items()
    config = Path(secrets.file)
    return next((key for file, key in files if file != config and same_file(path, file)), None)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same after links, or, both there, one inode (a
    hard link). Not for a device or a process's own descriptors (`/dev/null`, `/dev/stdout`):
    where they lead is how the process was started, not the config (two sinks to one journal
    socket when run by systemd, two pipes by hand), and `check` would not say what `run` finds."""
    if _wired_by_the_process(a) or _wired_by_the_process(b):
        return False
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False  # one of them is not there (yet), or cannot be asked


def _wired_by_the_process(path: Path) -> bool:
    # Through links too (a sink's path a link to /dev/stdout): `names_a_descriptor` follows them.
    if names_a_descriptor(path):
        return True
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False
