"""Shared fixtures: loopback fakes of both providers, config files, the CLI as a subprocess."""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import contextvars
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import settings

from reconciler import cli
from reconciler.daemon import Ticks
from reconciler.logs import logging_set_up
from reconciler.store import Store
from tests.fake_providers import CCNOW_CLIENT_ID, CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV
from tests.ports import free_port as free_port

if TYPE_CHECKING:
    from reconciler.poller.ccnow import CCNowCoordinator
    from tests.fake_ccv_writes import FakeCCVWrites
    from tests.server.test_api import Api

REPO = Path(__file__).resolve().parents[1]

# Hypothesis' per-example deadline (200 ms) is wall-clock: on a loaded machine an example that
# takes 2 ms of CPU can take a second, and the test fails for the machine, not the code. The
# cost tests that matter measure CPU time or counts of their own.
settings.register_profile("reconciler", deadline=None)
settings.load_profile("reconciler")

_BYTECODE = pytest.StashKey[str]()
_IN_MEMORY = pytest.StashKey[Path]()

# Where the run's files go when the machine has a memory file system with room: the store
# commits with synchronous=FULL, and on a disk each of the suite's thousands of stores waits for
# its fsyncs (a new store's migrations: 0.25 s against 0.06 s in memory, more on a busy disk).
# No test asks the disk to keep anything past a power loss, which is all an fsync adds.
_MEMORY_FS = Path("/dev/shm")
_MEMORY_FS_ROOM = 1 << 30
# A failed run's files are kept for reading, marked so; memory is no place to pile them up, so
# a run's start removes all but the newest few (never a running suite's: it has no mark).
_KEPT_MARK = "kept"
_KEPT_RUNS = 2


def _memory_fs() -> Path | None:
    """Return _MEMORY_FS if the run's files can go there: writable, room for them, programs
    written there may run (not mounted noexec: the command sinks' scripts are)."""
    try:
        fs = os.statvfs(_MEMORY_FS)
    except OSError:
        return None
    if fs.f_flag & (os.ST_RDONLY | os.ST_NOEXEC) or not os.access(_MEMORY_FS, os.W_OK | os.X_OK):
        return None
    return _MEMORY_FS if fs.f_bavail * fs.f_frsize >= _MEMORY_FS_ROOM else None


def _prune_kept(memory: Path) -> None:
    """Remove the files of earlier failed runs in `memory` but the newest _KEPT_RUNS."""
    marks = []
    for mark in memory.glob(f"rt-*/{_KEPT_MARK}"):
        try:
            marks.append((mark.stat().st_mtime, mark.parent))
        except OSError:
            continue  # removed meanwhile by another run's start
    for _, root in sorted(marks, reverse=True)[_KEPT_RUNS:]:
        shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before the tmp_path plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    """Put the run's temporary files (tmp_path, tempfile's) in memory where it can (see
    _MEMORY_FS), unless --basetemp names a place; xdist's workers and the programs they start
    inherit it. Removed at the end of a run that passed; a failed run's stay for reading (the
    summary says where) until a later run's start finds more than _KEPT_RUNS such.

    Where the environment asks for no bytecode (PYTHONDONTWRITEBYTECODE), give the run's
    interpreters (test workers and the programs they start) a cache outside the working tree
    (see _bytecode_cache): otherwise each of several hundred of them compiles the package from
    source, about half of a command's start, and each worker rewrites the asserts of every test
    module again, most of a worker's collection (12 s of CPU each). The environment's own wish
    for the working tree is kept."""
    if hasattr(config, "workerinput"):
        return
    memory = _memory_fs()
    if config.option.basetemp is None and memory is not None:
        _prune_kept(memory)
        root = Path(tempfile.mkdtemp(prefix="rt-", dir=memory))
        config.stash[_IN_MEMORY] = root
        config.option.basetemp = str(root / "p")  # short: a socket's path has 107 bytes
        (root / "t").mkdir()
        os.environ["TMPDIR"] = str(root / "t")
        tempfile.tempdir = None  # read TMPDIR again
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        kept = _bytecode_cache()
        if kept is None:
            cache = tempfile.mkdtemp(prefix="reconciler-tests-pycache-")
            config.stash[_BYTECODE] = cache  # this run's alone: removed at its end
        os.environ["PYTHONPYCACHEPREFIX"] = str(kept) if kept is not None else cache
        del os.environ["PYTHONDONTWRITEBYTECODE"]


def _bytecode_cache() -> Path | None:
    """The user's cache of the suite's bytecode (the XDG cache directory), made if need be;
    None where it cannot be. Kept between runs: a run rewrites and compiles only the files
    changed since (each file's bytecode names its path and records its source's time and size,
    so worktrees do not mix); a worktree's files stay after it is gone, a few MB."""
    try:
        home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").absolute()
        cache = home / "reconciler-tests" / "pycache"
        cache.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # no home directory to find, or none to write in
        return None
    return cache if os.access(cache, os.W_OK | os.X_OK) else None


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    root = config.stash.get(_IN_MEMORY, None)
    if root is not None and exitstatus != 0:
        terminalreporter.write_line(f"the run's temporary files are kept in {root}")


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = config.stash.get(_BYTECODE, None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    root = session.config.stash.get(_IN_MEMORY, None)
    if root is not None and exitstatus == 0:
        shutil.rmtree(root, ignore_errors=True)
    elif root is not None:
        (root / _KEPT_MARK).touch()


@pytest.fixture(scope="session")
def package_trees() -> Mapping[Path, ast.Module]:
    """Each module of the package parsed, in path order: once for a worker's tests that only
    read them (test_layout.py, test_module_state.py; a parse of the package is about a second
    of CPU, several on a loaded machine)."""
    package = REPO / "reconciler"
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(package.rglob("*.py"))}


def new_store_file(path: Path, sinks: tuple[str, ...]) -> Path:
    """Make a new store at `path` (opened and closed: no WAL left) for copy_new_store; return
    `path`. For tests that need a new store per example and test what is stored in it, not how
    a store is made (a new store's schema is a few hundredths of a second, most of such an
    example)."""

    async def made() -> None:
        await (await Store.open(path, sinks=sinks)).close()

    asyncio.run(made())
    return path


def copy_new_store(made: Path, path: Path) -> Path:
    """Copy new_store_file's store to `path`, private as a store's own file is; return `path`."""
    shutil.copyfile(made, path)
    path.chmod(0o600)
    return path


@pytest.fixture
async def fake_ccv() -> AsyncIterator[FakeCCV]:
    """A CCV status endpoint on 127.0.0.1."""
    fake = await FakeCCV().start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def fake_ccnow() -> AsyncIterator[FakeCCNow]:
    """A CCNow order receiver on 127.0.0.1."""
    fake = await FakeCCNow().start()
    try:
        yield fake
    finally:
        await fake.close()


def write_config(
    tmp_path: Path,
    *,
    ccv: FakeCCV | None = None,
    ccnow: FakeCCNow | None = None,
    extra: str = "",
    ccv_extra: str = "",
    ccnow_extra: str = "",
    retry_backoff: str = "10ms",
) -> Path:
    """Write a config for the fakes with a jsonl sink at tmp_path/events.jsonl; secrets come
    from the environment (see `cli_env`), as they would under systemd. A test that drives an
    account on its own clock through thousands of failed requests takes `retry_backoff="0s"`:
    the backoff between a request's attempts is wall-clock sleep, none of the schedule."""
    parts = [f'[store]\npath = "{tmp_path / "reconciler.db"}"\n']
    if ccv is not None:
        parts.append(
            f'[ccv]\nbase_url = "{ccv.base_url}"\nconcurrency = 8\ntimeout = "2s"\n'
            f'retries = 1\nretry_backoff = "{retry_backoff}"\n{ccv_extra}\n'
        )
    if ccnow is not None:
        parts.append(
            f'[ccnow]\nurl = "{ccnow.url}"\nclient_id = "{CCNOW_CLIENT_ID}"\nbatch_size = 25\n'
            f'timeout = "2s"\nretries = 1\nretry_backoff = "{retry_backoff}"\n{ccnow_extra}\n'
        )
    parts.append(f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "events.jsonl"}"\n')
    parts.append(extra)
    path = tmp_path / "reconciler.toml"
    path.write_text("\n".join(parts))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: credentials of the fakes, nothing inherited that
    could change the outcome."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECONCILER_", "JOURNAL_", "NOTIFY_", "WATCHDOG_"))
    }
    env.update(
        RECONCILER_CCV_API_KEY=CCV_KEY,
        RECONCILER_CCNOW_PASSWORD=CCNOW_PASSWORD,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Result:
    """A finished CLI run."""

    code: int
    stdout: str
    stderr: str

    def log_lines(self) -> list[dict[str, Any]]:
        """Return stderr's JSON log lines."""
        out = []
        for line in self.stderr.splitlines():
            line = line.lstrip("<0123456789>")
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def assert_one_line(result: Result, code: int, *words: str) -> None:
    """Assert a command exited `code` with one line on stderr, holding each of `words`, and no
    traceback: how an expected failure speaks."""
    assert result.code == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


async def run_cli(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    stdin: bytes | None = None,
    cwd: Path = REPO,
    cwd_deleted: bool = False,
) -> Result:
    """Run `python -m reconciler ARGS` without blocking the loop the fakes serve on, in `cwd`;
    `cwd_deleted`: the child removes that (empty) directory once it stands in it, before
    Python starts, as a shell left in a directory deleted since runs it (give PYTHONPATH)."""
    # `cwd_deleted`: a shell removes the directory it stands in, then becomes Python (no Python
    # runs in a child forked from this threaded process, as a preexec_fn would).
    shell = ("sh", "-c", 'rmdir "$PWD" && exec "$0" "$@"') if cwd_deleted else ()
    proc = await asyncio.create_subprocess_exec(
        *shell,
        sys.executable,
        "-m",
        "reconciler",
        *map(str, args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env if env is not None else cli_env()),
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@contextlib.contextmanager
def environ(env: Mapping[str, str]) -> Iterator[None]:
    """Give this process exactly `env` as its environment for the block."""
    kept = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(kept)


# Where the log lines of the running command or daemon go: a context variable, so that a
# command run beside an in-process daemon, and the tasks and thread it starts, write to its own
# stderr while the daemon's tasks keep writing to daemon.log (one process, one set of loggers).
_log_stream: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar(
    "log_stream", default=None
)


class _ContextStream(io.StringIO):
    """The stream the in-process CLI's log handler writes to: the one of the block the record
    was logged in (see _log_to), else stderr."""

    def write(self, text: str) -> int:
        return (_log_stream.get() or sys.stderr).write(text)

    def flush(self) -> None:
        (_log_stream.get() or sys.stderr).flush()


_CONTEXT_STREAM = _ContextStream()


@contextlib.contextmanager
def _log_to(stream: TextIO) -> Iterator[None]:
    token = _log_stream.set(stream)
    try:
        yield
    finally:
        _log_stream.reset(token)


@contextlib.contextmanager
def _stdin(data: bytes) -> Iterator[None]:
    kept = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        yield
    finally:
        sys.stdin = kept


async def call_cli(
    *args: str | os.PathLike[str], env: Mapping[str, str] | None = None, stdin: bytes = b""
) -> Result:
    """Run a command as `run_cli` does, but in this process: the console script's own entry
    function (`cli.run`: parsing, logging set up and put back, exit codes, its own event loop)
    on a worker thread, while this loop keeps serving the fakes. Saves starting an interpreter
    where the process itself is not what is tested. Signal handlers cannot be installed off the
    main thread: `run` goes through daemon_here, and `sandbox` and `demo` only as far as a
    refusal before their loop starts."""
    out, err = io.StringIO(), io.StringIO()
    argv = [str(a) for a in args]
    # Commands print to sys.stdout / sys.stderr and read sys.stdin, so those are swapped for
    # the call (process-wide; restored on leaving the block); log lines take the stream
    # injected through `cli.run` instead.
    with (
        environ(env if env is not None else cli_env()),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        _stdin(stdin),
        _log_to(err),
    ):
        code = await asyncio.to_thread(cli.run, argv, log_stream=_CONTEXT_STREAM)
    return Result(code, out.getvalue(), err.getvalue())


@dataclass
class DaemonHere:
    """A daemon running in this loop (see daemon_here)."""

    task: asyncio.Task[int]
    stopping: asyncio.Event
    waited: bool = False

    async def wait(self) -> int:
        """Return the daemon's exit code once it has stopped."""
        self.waited = True
        return await asyncio.shield(self.task)

    async def stop(self) -> int:
        """Stop the daemon as SIGTERM would and return its exit code."""
        self.stopping.set()
        return await self.wait()


@contextlib.asynccontextmanager
async def daemon_here(
    cfg: Path, env: Mapping[str, str] | None = None, *, ticks: Ticks | None = None
) -> AsyncIterator[DaemonHere]:
    """Run `reconciler run` in this loop for the block as the console script runs it (config,
    start checks, exit code and its line), its log lines and that line in `daemon.log` beside
    the config, sd_notify to $NOTIFY_SOCKET of `env`, `env` as the environment for the block;
    stopped by an event at the end instead of a signal. A daemon that stops with a code other
    than 0 fails the test, unless the block awaited the code (`wait`). `ticks` shortens how
    long it takes to notice what another process left in the store."""
    args = cli.parse_args(["--config", str(cfg), "run"])
    stop = asyncio.Event()
    with (
        environ(env if env is not None else cli_env()),
        (cfg.parent / "daemon.log").open("a") as log,
        logging_set_up(args.log_level, _CONTEXT_STREAM),
        _log_to(log),
    ):

        async def run() -> int:
            try:
                return await cli.config_command(args, stop=stop, ticks=ticks)
            except Exception as exc:
                return cli.exit_code(exc, log)

        handle = DaemonHere(asyncio.ensure_future(run()), stop)
        try:
            yield handle
        finally:
            stop.set()
            code = await handle.task
    if code != 0 and not handle.waited:
        raise AssertionError(f"the daemon exited {code}: {(cfg.parent / 'daemon.log')}")


async def spawn(
    *args: str | os.PathLike[str], env: Mapping[str, str], stderr: Any
) -> asyncio.subprocess.Process:
    """Start `python -m reconciler ARGS` with no stdin and stdout; stderr where given."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler",
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
        env=dict(env),
        cwd=REPO,
    )


@contextlib.asynccontextmanager
async def daemon(cfg: Path, env: Mapping[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run `reconciler run` for the block, its stderr in `daemon.log` beside the config; a
    daemon still running at the end is killed."""
    with (cfg.parent / "daemon.log").open("ab") as log:
        proc = await spawn("--config", cfg, "run", env=env, stderr=log)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def poll_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Wait until `predicate()` is true; for state owned by another process (a file, a
    subprocess's database), where there is no event to await."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


def awaiting(task: asyncio.Future[Any]) -> list[object]:
    """The code objects of the coroutines `task` is suspended in, outermost first: where a task
    of this loop waits, for a test to poll that state instead of sleeping a while (compare with
    a function's `__code__`; names would differ by Python version). Empty once it is done."""
    codes: list[object] = []
    step: Any = task.get_coro() if isinstance(task, asyncio.Task) and not task.done() else None
    while step is not None and hasattr(step, "cr_code"):
        codes.append(step.cr_code)
        step = step.cr_await
    return codes


def read_events(tmp_path: Path) -> list[dict[str, Any]]:
    """Return the events the jsonl sink wrote."""
    path = tmp_path / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def count_handoffs(monkeypatch: pytest.MonkeyPatch, store: Any) -> list[Callable[..., Any]]:
    """Return the list of functions `store` hands to its database thread from now on: every
    aiosqlite call queues one through the connection's `_execute`."""
    handed: list[Callable[..., Any]] = []
    real = store.conn._execute

    async def counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        handed.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(store.conn, "_execute", counted)
    return handed


# --- webhook endpoints ----------------------------------------------------------------------

# A Standard Webhooks secret for the sink named `webhook` (env RECONCILER_SINK_WEBHOOK_SECRET).
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def webhook_sink(url: str, **settings: str) -> str:
    """A `[[sinks]]` table of a webhook sink named `webhook`, its durations given as strings
    (`retry_min="1h"`)."""
    keys = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    return f'[[sinks]]\ntype = "webhook"\nurl = "{url}"\n{keys}'


def webhook_env() -> dict[str, str]:
    """cli_env with the webhook sink's secret."""
    return cli_env(RECONCILER_SINK_WEBHOOK_SECRET=WEBHOOK_SECRET)


class WebhookEndpoint:
    """A webhook endpoint on 127.0.0.1: a subclass's `handle` answers POST /hooks."""

    server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hooks"))


E = TypeVar("E", bound=WebhookEndpoint)


@contextlib.asynccontextmanager
async def serving(endpoint: E) -> AsyncIterator[E]:
    """Serve `endpoint` until the block ends."""
    app = web.Application()
    app.router.add_post("/hooks", endpoint.handle)
    endpoint.server = TestServer(app, host="127.0.0.1")
    await endpoint.server.start_server()
    try:
        yield endpoint
    finally:
        await endpoint.server.close()


class Clock:
    """A wall clock a test moves by hand (`clock.now += 60`)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    """A fake of CCV's boarding API (submit, pricing, status) on 127.0.0.1."""
    from tests.fake_ccv_writes import FakeCCVWrites  # beside this file's own users, not before

    async with FakeCCVWrites() as started:
        yield started


@pytest.fixture
async def api(tmp_path: Path, fake: FakeCCVWrites) -> AsyncIterator[Api]:
    """The integration API in this process, its CCV account on `fake`."""
    from tests.server.test_api import serve_api  # it imports this module

    async with serve_api(tmp_path, fake) as served:
        yield served


@contextlib.asynccontextmanager
async def ccnow_coordinator(
    tmp_path: Path, fake: FakeCCNow, poll_s: float, extra: str = ""
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    """The CCNow account (`poll_interval` `poll_s`, more keys in `extra`) over the real client,
    the loopback fake and a store in `tmp_path`, with the clock the test moves
    (RECONCILER_CCNOW_PASSWORD set)."""
    import aiohttp

    from reconciler.config import load_config
    from reconciler.poller.coordinators import Coordinators
    from reconciler.reconcile import Reconciler
    from reconciler.sources.http import Gates
    from reconciler.store import Store

    path = write_config(
        tmp_path,
        ccnow=fake,
        ccnow_extra=f'poll_interval = "{poll_s:.0f}s"\n{extra}',
        retry_backoff="0s",
    )
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(load_config(path), store, clock=clock)
            built = Coordinators.build(load_config(path), writer, session, Gates())
            yield built.ccnow["default"], clock
    finally:
        await store.close()
