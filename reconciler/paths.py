"""The files of a store at PATH, named by their suffix to the database's name: one list for
the store, which makes them (SQLite the write-ahead log and shared memory), and the config,
which refuses a jsonl sink writing into one. A leaf: the config reads no store code."""

from __future__ import annotations

from pathlib import Path

DATABASE = ""
WAL = "-wal"
SHM = "-shm"
HISTORY = "-history"  # store/history.py
LOCK = ".lock"  # store/files.py WriterLock

STORE_FILES = (
    (DATABASE, "the store's database"),
    (WAL, "the store's write-ahead log"),
    (SHM, "the store's shared-memory file"),
    (HISTORY, "the store's history mark"),
    (LOCK, "the store's lock file"),
)


def beside(db_path: Path, suffix: str) -> Path:
    """Return the store file of `db_path` named by `suffix`."""
    return db_path.with_name(db_path.name + suffix)
