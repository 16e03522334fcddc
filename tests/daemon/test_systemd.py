"""sd_notify client against real datagram sockets; the unit files against systemd-analyze."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from reconciler import daemon
from reconciler.systemd import Notifier
from reconciler.writes.in_flight import WRITES_STOP_MAX_S
from tests.notify_socket import NotifySocket

UNIT_DIR = Path(__file__).resolve().parents[2] / "systemd"
SERVICES = sorted(UNIT_DIR.glob("*.service"))

MakeNotifier = Callable[[Mapping[str, str]], Notifier]


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    """A bound notify socket, once on a filesystem path and once in the abstract namespace."""
    if request.param == "path":
        sock = NotifySocket.at_path(tmp_path / "notify")
    else:
        sock = NotifySocket.abstract()
    with sock:
        yield sock


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    """A notify socket on a filesystem path, for tests where the address kind does not matter."""
    with NotifySocket.at_path(tmp_path / "notify") as sock:
        yield sock


@pytest.fixture
def make_notifier() -> Iterator[MakeNotifier]:
    """Notifier.from_environ, with every notifier closed at the end even when the test fails."""
    made: list[Notifier] = []

    def make(environ: Mapping[str, str]) -> Notifier:
        made.append(Notifier.from_environ(environ))
        return made[-1]

    yield make
    for notifier in made:
        notifier.close()


# --- Notifier ----------------------------------------------------------------------------------


def test_ready_and_status_go_in_one_datagram(
    make_notifier: MakeNotifier, notify_socket: NotifySocket
) -> None:
    notifier = make_notifier(notify_socket.env())
    notifier.ready("polling 2 accounts")
    assert notify_socket.receive(timeout_s=2).lines == ["READY=1", "STATUS=polling 2 accounts"]


def test_the_stand_in_reads_what_comes_while_the_test_looks_elsewhere(
    make_notifier: MakeNotifier, path_socket: NotifySocket
) -> None:
    # The kernel keeps 10 unread datagrams (net.unix.max_dgram_qlen); a test busy elsewhere for
    # more than ten watchdog pings lost the daemon's STOPPING=1 that came next.
    notifier = make_notifier(path_socket.env())
    sent = []
    for _ in range(15):
        sent.append(notifier.notify("WATCHDOG=1"))
        time.sleep(0.05)  # the cadence of a daemon's pings, faster
    sent.append(notifier.notify("STOPPING=1"))
    assert all(sent)
    got = [path_socket.receive(timeout_s=2).lines for _ in sent]
    assert got == [["WATCHDOG=1"]] * 15 + [["STOPPING=1"]]


def test_ready_that_found_systemds_queue_full_goes_with_the_next_notification(
    make_notifier: MakeNotifier, tmp_path: Path
) -> None:
    # A socket nobody reads yet: the kernel queues a few datagrams (net.unix.max_dgram_qlen),
    # then a non-blocking send fails. READY=1 lost there would have systemd kill the service at
    # its start timeout.
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        notifier = make_notifier({"NOTIFY_SOCKET": str(path)})
        queued = 0
        while notifier.notify("STATUS=busy"):
            queued += 1
            assert queued < 100_000, "the queue never filled"
        notifier.ready()
        notifier.stopping()
        for _ in range(queued):
            assert systemd.recv(4096) == b"STATUS=busy"
        notifier.watchdog()
        assert systemd.recv(4096).split(b"\n") == [b"READY=1", b"STOPPING=1", b"WATCHDOG=1"]
        notifier.watchdog()
        assert systemd.recv(4096) == b"WATCHDOG=1"


def test_ready_without_status(make_notifier: MakeNotifier, notify_socket: NotifySocket) -> None:
    notifier = make_notifier(notify_socket.env())
    notifier.ready()
    assert notify_socket.receive(timeout_s=2).lines == ["READY=1"]


def test_notify_sends_states_together_and_reports_it(
    make_notifier: MakeNotifier, notify_socket: NotifySocket
) -> None:
    notifier = make_notifier(notify_socket.env())
    assert notifier.notify("EXTEND_TIMEOUT_USEC=5000000", "STATUS=migrating ünïcode") is True
    datagram = notify_socket.receive(timeout_s=2)
    assert datagram.raw == "EXTEND_TIMEOUT_USEC=5000000\nSTATUS=migrating ünïcode".encode()


def test_status_is_kept_to_one_line(
    make_notifier: MakeNotifier, notify_socket: NotifySocket
) -> None:
    notifier = make_notifier(notify_socket.env())
    notifier.status("ccv: failing\nREADY=1\r\nccnow: ok")
    assert notify_socket.receive(timeout_s=2).lines == ["STATUS=ccv: failing READY=1 ccnow: ok"]
    notifier.ready("a\nb")
    assert notify_socket.receive(timeout_s=2).lines == ["READY=1", "STATUS=a b"]


def test_notify_refuses_a_state_with_a_newline(
    make_notifier: MakeNotifier, notify_socket: NotifySocket
) -> None:
    notifier = make_notifier(notify_socket.env())
    with pytest.raises(ValueError, match="one line"):
        notifier.notify("STATUS=x\nREADY=1")


@pytest.mark.parametrize(
    ("send", "expected"),
    [(Notifier.stopping, "STOPPING=1"), (Notifier.watchdog, "WATCHDOG=1")],
)
def test_single_state_messages(
    make_notifier: MakeNotifier,
    notify_socket: NotifySocket,
    send: Callable[[Notifier], None],
    expected: str,
) -> None:
    notifier = make_notifier(notify_socket.env())
    send(notifier)
    assert notify_socket.receive(timeout_s=2).lines == [expected]


async def test_without_notify_socket_everything_is_a_no_op(
    make_notifier: MakeNotifier,
) -> None:
    notifier = make_notifier({"WATCHDOG_USEC": "2000000"})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    notifier.ready("x")
    notifier.status("x")
    notifier.stopping()
    notifier.watchdog()
    # Nothing to ping: returns at once instead of looping.
    await asyncio.wait_for(notifier.run_watchdog(), timeout=1)


def test_empty_notify_socket_counts_as_unset(
    make_notifier: MakeNotifier,
) -> None:
    assert not make_notifier({"NOTIFY_SOCKET": ""}).enabled


def test_send_errors_are_logged_once_and_never_raised(
    make_notifier: MakeNotifier,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "notify"
    notifier = make_notifier({"NOTIFY_SOCKET": str(path)})
    with caplog.at_level(logging.INFO, logger="reconciler.systemd"):
        assert notifier.notify("READY=1") is False  # nobody listening yet
        notifier.status("still nobody")
        notifier.watchdog()
        failed = [r for r in caplog.records if r.getMessage() == "systemd.notify_failed"]
        assert len(failed) == 1
        assert failed[0].levelno == logging.WARNING
        assert failed[0].exc_info is None
        assert failed[0].fields["socket"] == str(path)  # type: ignore[attr-defined]

        with NotifySocket.at_path(path) as sock:
            assert notifier.notify("WATCHDOG=1") is True
            # The READY=1 nobody got goes with it: it is said once.
            assert sock.receive(timeout_s=2).lines == ["READY=1", "WATCHDOG=1"]
        assert [r.getMessage() for r in caplog.records] == [
            "systemd.notify_failed",
            "systemd.notify_recovered",
        ]


def test_close_drops_later_notifications(
    make_notifier: MakeNotifier, notify_socket: NotifySocket
) -> None:
    notifier = make_notifier(notify_socket.env())
    assert notifier.notify("STATUS=before") is True
    notifier.close()
    assert notifier.notify("STATUS=after") is False
    assert notify_socket.receive(timeout_s=2).lines == ["STATUS=before"]
    with pytest.raises(TimeoutError):
        notify_socket.receive(timeout_s=0)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "500"}, 0.00025),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-1"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    make_notifier: MakeNotifier,
    environ: dict[str, str],
    expected: float | None,
) -> None:
    assert make_notifier(environ).watchdog_interval_s() == expected


async def test_run_watchdog_pings_on_cadence_until_cancelled(
    make_notifier: MakeNotifier, path_socket: NotifySocket
) -> None:
    notifier = make_notifier(
        {**path_socket.env(), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    )
    task = asyncio.create_task(notifier.run_watchdog())
    deadline = time.monotonic() + 1.5
    first = await path_socket.receive_async(timeout_s=deadline - time.monotonic())
    second = await path_socket.receive_async(timeout_s=deadline - time.monotonic())
    assert first.lines == second.lines == ["WATCHDOG=1"]
    # Every WATCHDOG_USEC/2 = 0.5 s, not faster.
    assert 0.4 <= second.received_at - first.received_at <= 1.0

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(TimeoutError):
        await path_socket.receive_async(timeout_s=0.65)


async def test_a_blocked_event_loop_stops_the_pings(
    make_notifier: MakeNotifier, path_socket: NotifySocket
) -> None:
    notifier = make_notifier({**path_socket.env(), "WATCHDOG_USEC": "100000"})
    task = asyncio.create_task(notifier.run_watchdog())
    await path_socket.receive_async(timeout_s=2)
    # Stand-in for a stuck handler: block the loop for ten ping intervals.
    threading.Event().wait(0.5)
    queued = 0
    while True:
        try:
            path_socket.receive(timeout_s=0)
        except TimeoutError:
            break
        queued += 1
    # A pinger on a thread would have queued about ten; the loop could send at most one.
    assert queued <= 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- unit files -------------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Read a unit file into section -> key -> values (repeated keys keep every value)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}: keep settings on one line: {line}"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: setting outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _systemd_version() -> int | None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.match(r"systemd (\d+)", out)
    return int(match.group(1)) if match else None


needs_systemd_analyze = pytest.mark.skipif(
    (_systemd_version() or 0) < 252, reason="needs systemd-analyze from systemd >= 252"
)

DAEMON_ONLY = {
    "Type",
    "NotifyAccess",
    "ExecStart",
    "RuntimeDirectory",
    "WatchdogSec",
    "Restart",
    "RestartSec",
    "RestartPreventExitStatus",
    "TimeoutStopSec",
    "TimeoutStartSec",
}
CATCHUP_ONLY = {"Type", "ExecStart", "TimeoutStartSec", "SuccessExitStatus"}


def test_every_service_is_scored() -> None:
    # Guards the parametrized exposure test below against an empty glob.
    assert [p.name for p in SERVICES] == ["reconciler-catchup.service", "reconciler.service"]


@needs_systemd_analyze
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_security_exposure_is_at_most_2(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


@needs_systemd_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart= exists here, so point it at a binary that does.
    true = shutil.which("true")
    assert true is not None
    for unit in UNIT_DIR.iterdir():
        text = unit.read_text().replace("/opt/reconciler/bin/reconciler", true)
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *sorted(p.name for p in tmp_path.iterdir())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_main_unit_is_a_watched_notify_service() -> None:
    service = parse_unit(UNIT_DIR / "reconciler.service")["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["30s"]
    # Not on-failure: a SIGHUP (logrotate's habit, `systemctl kill -s HUP`) stops the daemon
    # with 0, and the unit stayed inactive for good. A stop systemd made is not restarted.
    assert service["Restart"] == ["always"]
    assert service["RestartPreventExitStatus"][0].split() == ["78", "74"]
    assert service["TimeoutStopSec"] == ["60s"]
    # A first start after an upgrade migrates the store before READY=1: not killed for it.
    assert service["TimeoutStartSec"] == ["15min"]
    exec_start = service["ExecStart"][0].split()
    assert exec_start[0].startswith("/")
    assert exec_start[-1] == "run"


def test_the_shutdown_bound_is_told_as_the_code_makes_it() -> None:
    # The unit said 41 s, README and daemon.py 42 s. In turn: the writes out (30 s at most, then
    # 1 s for those cut off, from the stop's start: the receiver's checks' second and the
    # scheduler's jobs meanwhile), the other tasks, the outbox, both listeners' last answers.
    worst = (
        max(
            WRITES_STOP_MAX_S + 1,
            daemon.NOTIFICATION_CHECKS_STOP_TIMEOUT_S + daemon.JOBS_STOP_TIMEOUT_S,
        )
        + daemon.JOBS_STOP_TIMEOUT_S
        + daemon.OUTBOX_FLUSH_TIMEOUT_S
        + daemon.RECEIVER_STOP_TIMEOUT_S
    )
    told = f"{worst:g} s at the worst"
    assert told in (UNIT_DIR / "reconciler.service").read_text()
    assert told in (UNIT_DIR.parent / "README.md").read_text()
    assert f"last answers 1 s: {worst:g} s, under" in Path(daemon.__file__).read_text()
    service = parse_unit(UNIT_DIR / "reconciler.service")["Service"]
    assert float(service["TimeoutStopSec"][0].removesuffix("s")) > worst + 10


@pytest.mark.parametrize("name", ["reconciler.service", "reconciler-catchup.service"])
def test_services_get_secrets_as_credentials_only(name: str) -> None:
    service = parse_unit(UNIT_DIR / name)["Service"]
    credentials = {value.split(":", 1)[0] for value in service["LoadCredential"]}
    # Every secret the config can take from a credential, the API's token too: without it a
    # config with `[api]` and no token in the file would stop the service with exit 78.
    names = {"ccv-api-key", "ccnow-password", "ccnow-notification-token", "receiver-secret"}
    assert names | {"sink-webhook-secret", "api-token"} <= credentials
    assert "MemoryDenyWriteExecute" not in service
    # Secrets in Environment= or argv would show up in `systemctl show` and ps.
    for assignment in service.get("Environment", []):
        for name_value in assignment.split():
            env_name = name_value.split("=", 1)[0]
            assert not re.search(r"KEY|PASSWORD|SECRET|TOKEN", env_name), assignment
    assert not re.search(r"key|password|secret|token", service["ExecStart"][0], re.IGNORECASE)


def test_catchup_service_shares_state_user_and_sandbox_with_the_daemon() -> None:
    main = parse_unit(UNIT_DIR / "reconciler.service")
    catchup = parse_unit(UNIT_DIR / "reconciler-catchup.service")
    assert catchup["Service"]["Type"] == ["oneshot"]
    catchup_argv = catchup["Service"]["ExecStart"][0].split()
    assert catchup_argv[-1] == "catch-up"
    assert catchup_argv[0] == main["Service"]["ExecStart"][0].split()[0]
    # Same User= gives both the same dynamic UID, so neither chowns the state away from the other.
    assert main["Service"]["User"] == catchup["Service"]["User"]
    shared_main = {k: v for k, v in main["Service"].items() if k not in DAEMON_ONLY}
    shared_catchup = {k: v for k, v in catchup["Service"].items() if k not in CATCHUP_ONLY}
    assert shared_catchup == shared_main
    # Skipped, not failed, while the daemon (which holds the store) runs.
    runtime_dir = main["Service"]["RuntimeDirectory"][0]
    assert catchup["Unit"]["ConditionPathExists"] == [f"!/run/{runtime_dir}"]


def test_catchup_timer_runs_hourly_and_catches_up_after_downtime() -> None:
    timer = parse_unit(UNIT_DIR / "reconciler-catchup.timer")
    assert timer["Timer"]["OnCalendar"] == ["hourly"]
    assert timer["Timer"]["Persistent"] == ["true"]
    assert timer["Timer"]["Unit"] == ["reconciler-catchup.service"]
    assert timer["Timer"]["RandomizedDelaySec"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]


@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_a_stop_signals_reconciler_alone(unit: Path) -> None:
    # Both deliver to sinks: with the default (control-group) a command sink's program got
    # SIGTERM with reconciler, though the stop awaits a command under way for 2.5 s.
    assert parse_unit(unit)["Service"]["KillMode"] == ["mixed"]


@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_services_refuse_io_uring(unit: Path) -> None:
    # README promises the filter refuses io_uring; @system-service alone allows it (@aio).
    service = parse_unit(unit)["Service"]
    refused = {
        name
        for line in service["SystemCallFilter"]
        if line.startswith("~")
        for name in line[1:].split()
    }
    assert {"io_uring_setup", "io_uring_enter", "io_uring_register"} <= refused
    assert service["SystemCallErrorNumber"] == ["EPERM"]  # what the io_uring test refuses with
