"""`reconciler check` as the console script runs it: a file that used to fail, or a typo that used
to pass."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from reconciler.store import Store, WriterLock
from tests.conftest import call_cli, cli_env, run_cli, write_config
from tests.fake_providers import FakeCCV
from tests.store.test_history import add_to

CCV = '[ccv]\nbase_url = "https://ccv.example"\n'


def config_text(tmp_path: Path, text: str) -> str:
    return f'[store]\npath = "{tmp_path / "reconciler.db"}"\n' + text


async def test_check_refuses_a_misspelt_status_word_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(
        config_text(tmp_path, CCV) + '[alerts.stuck_after.ccv]\nprocessing = "1d"\n',
        encoding="utf-8",
    )
    result = await call_cli("--config", cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"config error: {cfg}: alerts.stuck_after.ccv.processing: did you mean 'Processing'? "
        "status words are case-sensitive"
    ]


async def test_check_accepts_a_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_bytes(b"\xef\xbb\xbf" + config_text(tmp_path, CCV).encode())
    result = await call_cli("--config", cfg, "check")
    assert (result.code, result.stderr) == (0, ""), result.stderr
    assert "config ok" in result.stdout


async def test_check_refuses_a_command_sink_whose_program_is_missing(tmp_path: Path) -> None:
    # Else every event is retried until max_age, then dead-lettered. Only `check` refuses it:
    # a read-only command on a host without the hook still works.
    cfg = tmp_path / "reconciler.toml"
    sink = '[[sinks]]\ntype = "jsonl"\npath = "e.jsonl"\n[[sinks]]\ntype = "command"\n'
    cfg.write_text(
        config_text(tmp_path, CCV) + sink + 'command = ["/nonexistent/notify", "-q"]\n',
        encoding="utf-8",
    )
    result = await call_cli("--config", cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == (
        f"config error: {cfg}: sinks[1].command[0]: no executable program "
        "'/nonexistent/notify' (a path, or a name on PATH)"
    )
    assert (await call_cli("--config", cfg, "orders")).code == 0


async def test_a_command_sink_argument_with_a_nul_is_a_config_error(tmp_path: Path) -> None:
    # Accepted before: uvloop ran the program with the argument cut at the NUL (delivered, and
    # wrong), asyncio made every attempt a sink.crashed traceback.
    cfg = tmp_path / "reconciler.toml"
    sink = '[[sinks]]\ntype = "command"\ncommand = ["/bin/true", "--to", "ops\\u0000dev"]\n'
    cfg.write_text(config_text(tmp_path, CCV) + sink, encoding="utf-8")
    result = await call_cli("--config", cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == (
        f"config error: {cfg}: sinks[0].command[2]: must not contain a NUL character"
    )


async def test_a_relative_command_sink_program_is_beside_the_config(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was looked up from the current directory: under systemd (`/`) `check` said 78 and
    # the daemon dead-lettered every event. A bare name is still looked up on PATH.
    hook = tmp_path / "hooks" / "record"
    hook.parent.mkdir()
    hook.write_text(
        f"#!{sys.executable}\nimport os, pathlib\n"
        "with open(pathlib.Path(__file__).parent / 'got', 'a') as f:\n"
        "    f.write(os.environ['RECONCILER_EVENT_TYPE'] + '\\n')\n"
    )
    hook.chmod(0o755)
    sinks = '[[sinks]]\ntype = "command"\nname = "hook"\ncommand = ["./hooks/record"]\n'
    sinks += '[[sinks]]\ntype = "command"\nname = "bare"\ncommand = ["true"]\n'
    fake_ccv.orders = {"O-1": "New"}
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=sinks)
    monkeypatch.chdir("/")
    checked = await call_cli("--config", cfg, "check", env=cli_env())
    assert (checked.code, checked.stderr) == (0, ""), checked.stderr
    assert (await call_cli("--config", cfg, "track", "ccv", "O-1", env=cli_env())).code == 0
    caught_up = await call_cli("--config", cfg, "catch-up", env=cli_env())
    assert caught_up.code == 0, caught_up.stderr
    assert (hook.parent / "got").read_text() == "order.discovered\n"


async def test_check_judges_the_config_whatever_the_store_is(tmp_path: Path) -> None:
    # `check` looks into the store only to warn about unconfigured accounts: a store it cannot
    # open (here another application's file; in production, one only the service's user may
    # read) is not its business, and was a traceback with exit 70.
    store = tmp_path / "reconciler.db"
    store.write_bytes(b"not a database at all\n" * 100)
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(config_text(tmp_path, CCV), encoding="utf-8")
    result = await call_cli("--config", cfg, "check")
    assert (result.code, result.stderr) == (0, ""), result.stderr
    assert "config ok" in result.stdout


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("sub", "{dir}/sub is a directory"),  # `.` and `sub/`: test_config_refusals
        ("/dev/null", "/dev/null is not a regular file"),
        ("reconciler.toml/reconciler.db", "{dir}/reconciler.toml is not a directory"),
        ("loop/reconciler.db", "{dir}/loop/reconciler.db: Too many levels of symbolic links"),
    ],
    ids=["directory", "device", "under-a-file", "loop"],
)
async def test_check_refuses_a_store_path_no_command_can_use(
    tmp_path: Path, path: str, problem: str
) -> None:
    # `check` said ok; `status`, `track` and the daemon then refused the store (74).
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f'[store]\npath = "{path}"\n' + CCV, encoding="utf-8")
    result = await call_cli("--config", cfg, "check")
    assert result.code == 78, result.stderr
    assert (
        result.stderr.strip() == f"config error: {cfg}: store.path: {problem.format(dir=tmp_path)}"
    )
    if path.startswith("reconciler.toml/"):
        # What the commands that open it say: not mkdir's "File exists".
        result = await call_cli("--config", cfg, "track", "ccv", "ORDER-1")
        assert result.code == 74, result.stderr
        assert result.stderr.strip().endswith(f"{tmp_path / path}: Not a directory")


async def test_check_names_the_default_store_path_it_refuses(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("", encoding="utf-8")
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(CCV, encoding="utf-8")
    env = {**cli_env(), "STATE_DIRECTORY": str(tmp_path / "state")}
    result = await call_cli("--config", cfg, "check", env=env)
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == (
        f"config error: {cfg}: store.path: {tmp_path / 'state'} is not a directory "
        "(the default store path: [store] path is not set)"
    )


def listeners(receiver: str, api: str | None) -> str:
    text = f'[receiver]\nlisten = "{receiver}"\npublic_url = "https://i.example"\n'
    text += 'secret = "0123456789abcdef"\n'
    if api is not None:
        text += f'[api]\nlisten = "{api}"\ntoken = "0123456789abcdef"\n'
    return text


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(
    ("receiver", "api", "key", "problem"),
    [
        (
            "999.1.1.1:18866",
            None,
            "receiver.listen",
            "'999.1.1.1' is neither an IP address nor a host name",
        ),
        (
            "host name:18866",
            None,
            "receiver.listen",
            "'host name' is neither an IP address nor a host name",
        ),
        (
            "localhost:18866",
            "127.0.0.1:18866",
            "api.listen",
            "127.0.0.1:18866 is [receiver] listen's port too, "
            "and its host 'localhost' may be the same address",
        ),
        (
            "[::ffff:127.0.0.1]:18866",
            None,
            "receiver.listen",
            "'::ffff:127.0.0.1' is an IPv4-mapped IPv6 address, which cannot be listened on: "
            "use the IPv4 address 127.0.0.1",
        ),
        (
            "127.0.0.1:18866",
            "[::FFFF:7f00:1]:18867",
            "api.listen",
            "'::FFFF:7f00:1' is an IPv4-mapped IPv6 address, which cannot be listened on: "
            "use the IPv4 address 127.0.0.1",
        ),
    ],
    ids=["not-an-ip", "blank-in-name", "name-beside-ip", "ipv4-mapped", "ipv4-mapped-api"],
)
async def test_a_listen_address_that_cannot_bind_is_a_config_error(
    tmp_path: Path, command: str, receiver: str, api: str | None, key: str, problem: str
) -> None:
    # `check` said ok; `run` failed to bind and exited 75, which systemd restarts forever.
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(config_text(tmp_path, CCV) + listeners(receiver, api), encoding="utf-8")
    result = await call_cli("--config", cfg, command)
    assert result.code == 78, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"config error: {cfg}: {key}: {problem}"


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("sub", "{dir}/sub is a directory"),  # `.` and `sub/`: test_config_refusals
        ("reconciler.toml/events.jsonl", "{dir}/reconciler.toml is not a directory"),
        ("reconciler.toml/a/b/events.jsonl", "{dir}/reconciler.toml is not a directory"),
        # A component over 255 bytes (ENAMETOOLONG) used to pass as "not searchable".
        (f"{'a' * 300}/events.jsonl", f"{{dir}}/{'a' * 300}/events.jsonl: File name too long"),
        # A loop of links (ELOOP) used to pass as a directory not made yet.
        ("loop/events.jsonl", "{dir}/loop/events.jsonl: Too many levels of symbolic links"),
    ],
    ids=["directory", "file-as-directory", "file-above", "name-too-long", "loop"],
)
async def test_check_refuses_a_jsonl_path_no_event_can_be_written_to(
    tmp_path: Path, path: str, problem: str
) -> None:
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "reconciler.toml"
    sink = f'[[sinks]]\ntype = "log"\n[[sinks]]\ntype = "jsonl"\npath = "{path}"\n'
    cfg.write_text(config_text(tmp_path, CCV) + sink, encoding="utf-8")
    result = await call_cli("--config", cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == (
        f"config error: {cfg}: sinks[1].path: {problem.format(dir=tmp_path)}"
    )
    # As for a command sink's program, only `check` judges it.
    assert (await call_cli("--config", cfg, "orders")).code == 0


@pytest.mark.parametrize("path", ["events.jsonl", "not/yet/made/events.jsonl", "events.fifo"])
async def test_check_accepts_a_jsonl_file_in_a_directory_that_exists_or_will_be_made(
    tmp_path: Path, path: str
) -> None:
    # The sink makes the directories it writes in at its first delivery. A pipe (a FIFO a
    # log shipper reads, /dev/stdout) has each batch once written (tests/sinks).
    os.mkfifo(tmp_path / "events.fifo")
    cfg = tmp_path / "reconciler.toml"
    sink = f'[[sinks]]\ntype = "jsonl"\npath = "{path}"\n'
    cfg.write_text(config_text(tmp_path, CCV) + sink, encoding="utf-8")
    result = await call_cli("--config", cfg, "check")
    assert (result.code, result.stderr) == (0, ""), result.stderr


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("reconciler.db", "the store's database"),
        ("reconciler.db-wal", "the store's write-ahead log"),
        ("reconciler.db-shm", "the store's shared-memory file"),
        ("reconciler.db-history", "the store's history mark"),
        ("reconciler.db.lock", "the store's lock file"),
        ("reconciler.toml", "this config file"),
        ("link-to-db", "the store's database"),  # the same file after links
        ("hard-link-to-config", "this config file"),  # one inode
        ("real/store.db-wal", "the store's write-ahead log"),  # beside the store link's target
    ],
    ids=["db", "wal", "shm", "history", "lock", "config", "link", "hard-link", "link-target"],
)
async def test_a_jsonl_path_that_is_one_of_reconcilers_own_files_is_a_config_error(
    tmp_path: Path, path: str, what: str
) -> None:
    # Every event written there was lost (SQLite truncates its files at a checkpoint), or
    # made the config invalid TOML at the next start; `check` passed it.
    (tmp_path / "real").mkdir()
    (tmp_path / "store.db").symlink_to(tmp_path / "real" / "store.db")
    (tmp_path / "link-to-db").symlink_to(tmp_path / "reconciler.db")
    store = "store.db" if path.startswith("real/") else "reconciler.db"
    cfg = tmp_path / "reconciler.toml"
    sink = f'[[sinks]]\ntype = "jsonl"\npath = "{path}"\n'
    cfg.write_text(f'[store]\npath = "{tmp_path / store}"\n' + CCV + sink, encoding="utf-8")
    os.link(cfg, tmp_path / "hard-link-to-config")
    for command in ("check", "orders"):
        result = await call_cli("--config", cfg, command)
        assert result.code == 78, result.stderr
        assert result.stderr.strip() == (
            f"config error: {cfg}: sinks[0].path: {tmp_path / path} is {what}; "
            "the sink needs a file of its own"
        )


async def test_every_file_a_running_store_keeps_is_refused_as_a_jsonl_path(
    tmp_path: Path,
) -> None:
    # The config's list of the store's files is the one the store names them by (paths.py):
    # a file the store made that the list lacked would take events SQLite truncates.
    db = tmp_path / "reconciler.db"
    lock = WriterLock(db)
    lock.acquire()
    try:
        store = await Store.open(db, locked=True)
        try:
            await add_to(store, 1)
            made = sorted(p.name for p in tmp_path.iterdir())
        finally:
            await store.close()
    finally:
        lock.release()
    assert {"reconciler.db", "reconciler.db-wal", "reconciler.db-history"} <= set(made)
    cfg = tmp_path / "reconciler.toml"
    for name in made:
        sink = f'[[sinks]]\ntype = "jsonl"\npath = "{name}"\n'
        cfg.write_text(config_text(tmp_path, CCV) + sink, encoding="utf-8")
        result = await call_cli("--config", cfg, "check")
        assert result.code == 78, (name, result.stderr)
        assert "the sink needs a file of its own" in result.stderr


async def test_a_second_log_sink_is_a_config_error(tmp_path: Path) -> None:
    # Each log sink wrote every event to the log: every line twice, and log alerting fired twice.
    cfg = tmp_path / "reconciler.toml"
    sinks = '[[sinks]]\ntype = "log"\n[[sinks]]\ntype = "log"\n'
    cfg.write_text(config_text(tmp_path, CCV) + sinks, encoding="utf-8")
    for command in ("check", "catch-up", "status"):
        result = await call_cli("--config", cfg, command)
        assert result.code == 78, result.stderr
        assert result.stderr.strip() == (
            f"config error: {cfg}: sinks[1].type: a second log sink (sinks[0] is one): "
            "the log gets every event once; remove one"
        )


@pytest.mark.parametrize("second", ["events.jsonl", "./events.jsonl", "link.jsonl"])
async def test_two_jsonl_sinks_on_one_file_are_a_config_error(tmp_path: Path, second: str) -> None:
    # Their batches interleaved (on a FIFO, past PIPE_BUF: within a line), and one's taking
    # back a batch cut short (ftruncate) cut the lines the other had delivered.
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "events.jsonl")
    cfg = tmp_path / "reconciler.toml"
    sinks = (
        '[[sinks]]\ntype = "jsonl"\nname = "a"\npath = "events.jsonl"\n'
        '[[sinks]]\ntype = "log"\n'
        f'[[sinks]]\ntype = "jsonl"\nname = "b"\npath = "{second}"\n'
    )
    cfg.write_text(config_text(tmp_path, CCV) + sinks, encoding="utf-8")
    for command in ("check", "orders"):
        result = await call_cli("--config", cfg, command)
        assert result.code == 78, result.stderr
        assert result.stderr.strip() == (
            f"config error: {cfg}: sinks[2].path: {tmp_path / second} is the file "
            "sinks[0].path names; the sink needs a file of its own"
        )


@pytest.mark.parametrize(
    ("first", "second"), [("/dev/null", "/dev/null"), ("/dev/stdout", "/dev/stderr")]
)
async def test_jsonl_sinks_on_devices_are_not_taken_for_one_file(
    tmp_path: Path, first: str, second: str
) -> None:
    # Where /dev/stdout and /dev/stderr lead is how the process was started (one journal socket
    # under systemd, one terminal by hand, two pipes in a script): `check` refused or passed the
    # same config by that, and so would the daemon's start.
    cfg = tmp_path / "reconciler.toml"
    sinks = (
        f'[[sinks]]\ntype = "jsonl"\nname = "a"\npath = "{first}"\n'
        f'[[sinks]]\ntype = "jsonl"\nname = "b"\npath = "{second}"\n'
    )
    cfg.write_text(config_text(tmp_path, CCV) + sinks, encoding="utf-8")
    result = await call_cli("--config", cfg, "check")
    assert result.code == 0, result.stderr


async def test_jsonl_sinks_linked_to_stdout_are_not_taken_for_one_file(tmp_path: Path) -> None:
    # Links to /dev/stdout lead where the process's stdout does (here a pipe, as in a script):
    # two such sinks were one pipe to `check`, refused, whereas /dev/stdout twice passed.
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).symlink_to("/dev/stdout")
    cfg = tmp_path / "reconciler.toml"
    sinks = "".join(
        f'[[sinks]]\ntype = "jsonl"\nname = "{n}"\npath = "{tmp_path / f"{n}.jsonl"}"\n'
        for n in ("a", "b")
    )
    cfg.write_text(config_text(tmp_path, CCV) + sinks, encoding="utf-8")
    # A process: /dev/stdout must be its own stdout, a pipe.
    result = await run_cli("--config", cfg, "check")
    assert result.code == 0, result.stderr
