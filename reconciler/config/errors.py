"""The one error type of configuration loading."""

from __future__ import annotations


def escaped(text: str) -> str:
    """Return `text` with every character that is not printable written as an escape (a line
    break as `\\x0a`, ESC as `\\x1b`, a zero-width space as `\\u200b`); other text as it is."""
    if text.isprintable():
        return text
    # A backslash stays as it is, so escaping twice changes nothing (MissingSecret raises its
    # error again from the escaped parts).
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class ConfigError(Exception):
    """A configuration problem; str() is the one line `config error: <file>: <key>: <problem>`.

    Keys, values quoted in the problem and the file's name come from the user: what is not
    printable is escaped, so the message stays one line and cannot drive a terminal."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        file, key, problem = escaped(file), escaped(key), escaped(problem)
        super().__init__(f"config error: {file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem
