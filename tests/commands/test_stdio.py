"""Reading a file the operator names (a config, a secret, `--from-file`, a JSON body): bounded,
and a FIFO is waited for only while a writer may come or holds it. The commands' own tests
check their exit codes and messages; the waits are checked here, with a short one."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from reconciler.stdio import NotReadHere, read_bounded

WAIT_S = 0.2


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


def test_a_fifo_no_writer_opens_is_refused_after_the_wait(fifo: Path) -> None:
    started = time.monotonic()
    with pytest.raises(NotReadHere, match=r"^a pipe nothing wrote to for 0\.2 s$"):
        read_bounded(fifo, 1024, pipes=True, pipe_wait_s=WAIT_S)
    assert WAIT_S <= time.monotonic() - started < 10 * WAIT_S


def test_a_fifo_a_writer_holds_is_waited_for_past_the_wait(fifo: Path) -> None:
    # `--config <(sops -d ...)` waiting on KMS or a PIN longer than the wait was refused: a
    # pipe a writer holds is waited for as stdin is. Held from before the read, written to two
    # waits later (a read that gave up after its wait has by then), then closed.
    holder = os.open(fifo, os.O_RDWR)

    def write_late() -> None:
        time.sleep(2 * WAIT_S)  # the slow writer itself, not a synchronisation
        os.write(holder, b"late but whole\n")
        os.close(holder)

    writer = threading.Thread(target=write_late)
    writer.start()
    try:
        assert read_bounded(fifo, 1024, pipes=True, pipe_wait_s=WAIT_S) == b"late but whole\n"
    finally:
        writer.join()


def test_a_fifo_whose_writer_comes_within_the_wait_is_read(fifo: Path) -> None:
    def write() -> None:
        with open(fifo, "wb") as end:  # blocks until the reader has opened it
            end.write(b"ids\n")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert read_bounded(fifo, 1024, pipes=True, pipe_wait_s=30) == b"ids\n"
    finally:
        writer.join()


def test_a_fifo_is_refused_where_pipes_are_not_read(fifo: Path) -> None:
    with pytest.raises(NotReadHere, match=r"^not a regular file$"):
        read_bounded(fifo, 1024)
