"""A job's busy periods on a clock the test holds (Overruns is pure): one `job.skipped` when a
job starts overrunning its interval, one `job.caught_up` once it has really kept up again, one
`job.behind` when it stays behind run after run."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest

from reconciler.scheduler import Line, Overruns

TICK_S = 0.5  # a due tick's interval (0.5 is exact in binary: the ticks add up without error)


class Schedule:
    """Runs a job on an interval schedule as APScheduler does with one instance at most and
    coalescing: a tick that finds the run going is skipped, the next run starts at the first
    tick after its end."""

    def __init__(self, overruns: Overruns, interval_s: float = TICK_S, job: str = "due") -> None:
        self.overruns, self.interval_s, self.job = overruns, interval_s, job
        self.now = 0.0  # the tick that starts the next run
        self.lines: list[tuple[float, Line]] = []  # when, what the scheduler would log

    def run(self, durations: Iterable[float]) -> None:
        for duration in durations:
            end, tick = self.now + duration, self.now + self.interval_s
            while tick < end:
                self._said(tick, self.overruns.skipped(self.job, tick))
                tick += self.interval_s
            self._said(end, self.overruns.ran(self.job, end))
            self.now = tick

    def said(self) -> list[str]:
        return [message for _, (_, message, _) in self.lines]

    def _said(self, when: float, line: Line | None) -> None:
        if line is not None:
            self.lines.append((when, line))


def test_a_job_straddling_its_interval_is_one_busy_period_until_it_keeps_up() -> None:
    # One run 1.1 intervals, the next 0.9, for ten minutes: a skipped/caught_up pair every
    # 1.5 s it was (800 lines); now one line when it starts, one when it is really over.
    schedule = Schedule(Overruns())
    schedule.run([1.1 * TICK_S, 0.9 * TICK_S] * 400)
    assert schedule.now == 600.0
    assert schedule.said() == ["job.skipped"]  # never behind run after run: no job.behind
    schedule.run([0.1 * TICK_S] * 200)  # on time for 100 s
    assert schedule.said() == ["job.skipped", "job.caught_up"]
    when, (level, _, values) = schedule.lines[1]
    last_late_end = 600.0 - 1.5 + 1.1 * TICK_S
    assert level == logging.INFO
    assert when == pytest.approx(last_late_end + 60.0, abs=TICK_S)  # quiet for QUIET_S
    # The busy period itself: from the first skipped tick to the end of its last late run
    assert values == {"job": "due", "skipped": 400, "seconds": round(last_late_end - 0.5, 3)}


@pytest.mark.parametrize(
    ("interval_s", "on_time_runs"),
    [
        (0.5, 121),  # a due tick: QUIET_S (60 s) is the longer wait
        (60.0, 3),  # a pending list polled every minute: QUIET_RUNS is
    ],
)
def test_a_busy_period_ends_after_quiet_runs_and_quiet_seconds_both(
    interval_s: float, on_time_runs: int
) -> None:
    schedule = Schedule(Overruns(), interval_s)
    schedule.run([2.5 * interval_s])  # two ticks skipped
    late_end = schedule.now - 0.5 * interval_s
    schedule.run([0.1 * interval_s] * (on_time_runs - 1))
    assert schedule.said() == ["job.skipped"]
    schedule.run([0.1 * interval_s])
    assert schedule.said() == ["job.skipped", "job.caught_up"]
    when, (_, _, values) = schedule.lines[-1]
    assert when - late_end >= 60.0
    assert values == {"job": "due", "skipped": 2, "seconds": round(late_end - interval_s, 3)}


def test_a_late_run_among_the_quiet_ones_starts_the_quiet_period_again() -> None:
    schedule = Schedule(Overruns(quiet_runs=3, quiet_s=0.0))
    late, on_time = 1.5 * TICK_S, 0.5 * TICK_S
    schedule.run([late, on_time, on_time, late, on_time, on_time, late])
    assert schedule.said() == ["job.skipped"]
    schedule.run([on_time] * 3)
    assert schedule.said() == ["job.skipped", "job.caught_up"]
    assert schedule.lines[-1][1][2]["skipped"] == 3
    schedule.run([late])  # a new busy period: said again
    assert schedule.said() == ["job.skipped", "job.caught_up", "job.skipped"]


def test_behind_warns_once_when_runs_are_over_their_interval_in_a_row_for_behind_s() -> None:
    schedule = Schedule(Overruns())
    schedule.run([1.1 * TICK_S, 0.9 * TICK_S] * 300)  # 450 s busy, never behind run after run
    assert schedule.said() == ["job.skipped"]
    streak_began = schedule.now + TICK_S  # the first tick the next (long) run skips
    schedule.run([3.9 * TICK_S] * 145)  # every run over its interval: 290 s
    assert schedule.said() == ["job.skipped"]
    schedule.run([3.9 * TICK_S] * 100)
    assert schedule.said() == ["job.skipped", "job.behind"]
    when, (level, _, values) = schedule.lines[1]
    assert level == logging.WARNING
    assert values["seconds"] == pytest.approx(when - streak_began)
    assert 300.0 <= values["seconds"] < 300.0 + 2 * TICK_S
    schedule.run([3.9 * TICK_S] * 200)  # behind on: said once
    assert schedule.said() == ["job.skipped", "job.behind"]


def test_each_streak_of_late_runs_in_a_busy_period_that_never_ends_warns_once() -> None:
    # A job straddling its interval all day is one busy period that never ends: it warned
    # `job.behind` for its first outage (runs over their interval one after the other for
    # 300 s) and never again, whatever came later. Each such streak warns once.
    schedule = Schedule(Overruns())
    straddling = [1.1 * TICK_S, 0.9 * TICK_S] * 2400  # an hour
    outage = [3.9 * TICK_S] * 400  # 10 min of runs over their interval, one after the other
    schedule.run(straddling + outage + straddling)
    assert schedule.said() == ["job.skipped", "job.behind"]
    streak_began = schedule.now + TICK_S  # the first tick the next (long) run skips
    schedule.run(outage + straddling)
    assert schedule.said() == ["job.skipped", "job.behind", "job.behind"]
    when, (_, _, values) = schedule.lines[-1]
    assert 300.0 <= values["seconds"] == pytest.approx(when - streak_began)
    # The ticks the streak skipped (three of a run's four for 300 s), not the busy period's
    assert values == {"job": "due", "skipped": 451, "seconds": 300.0}


def test_each_job_has_its_own_busy_period() -> None:
    overruns = Overruns(quiet_s=0.0)
    slow, quick = Schedule(overruns, job="slow"), Schedule(overruns, job="quick")
    slow.run([1.5 * TICK_S])
    quick.run([0.5 * TICK_S] * 5)
    assert slow.said() == ["job.skipped"] and quick.said() == []
    slow.run([0.5 * TICK_S] * 3)
    assert slow.said() == ["job.skipped", "job.caught_up"]
