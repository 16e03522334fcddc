"""The one error type of configuration loading."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem; str() is the one line `config error: <file>: <key>: <problem>`."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"config error: {file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem
