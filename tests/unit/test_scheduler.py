from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from rag_autotune.local.scheduler import Scheduler, next_fire, parse_cron


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("cron(0 3 * * ? *)", utc(2024, 5, 1, 2, 59, 30), utc(2024, 5, 1, 3, 0)),
        ("cron(0 3 * * ? *)", utc(2024, 5, 1, 3, 0), utc(2024, 5, 2, 3, 0)),  # strictly after
        ("cron(0 3 * * ? *)", utc(2024, 12, 31, 4, 0), utc(2025, 1, 1, 3, 0)),
        ("cron(*/5 * * * ? *)", utc(2024, 5, 1, 10, 7, 12), utc(2024, 5, 1, 10, 10)),
        ("cron(*/5 * * * ? *)", utc(2024, 5, 1, 23, 58), utc(2024, 5, 2, 0, 0)),
        ("cron(15,45 8-9 * * ? *)", utc(2024, 5, 1, 9, 45), utc(2024, 5, 2, 8, 15)),
        ("cron(0 12 ? * MON-FRI *)", utc(2024, 5, 3, 13, 0), utc(2024, 5, 6, 12, 0)),  # Fri → Mon
        ("cron(0 12 ? * 1 *)", utc(2024, 5, 1, 0, 0), utc(2024, 5, 5, 12, 0)),  # 1 = Sunday
        ("cron(0 0 29 FEB ? *)", utc(2024, 3, 1, 0, 0), utc(2028, 2, 29, 0, 0)),
        ("cron(30 6 1 1 ? 2030)", utc(2024, 1, 1, 0, 0), utc(2030, 1, 1, 6, 30)),
        ("cron(10-40/10 * * * ? *)", utc(2024, 5, 1, 10, 40), utc(2024, 5, 1, 11, 10)),
        ("rate(5 minutes)", utc(2024, 5, 1, 10, 7), utc(2024, 5, 1, 10, 12)),
        ("rate(1 day)", utc(2024, 5, 1, 10, 7), utc(2024, 5, 2, 10, 7)),
    ],
)
def test_next_fire(expr: str, after: datetime, expected: datetime) -> None:
    assert next_fire(expr, after) == expected


def test_naive_and_offset_datetimes_are_utc() -> None:
    assert next_fire("cron(0 3 * * ? *)", datetime(2024, 5, 1, 2, 0)) == utc(2024, 5, 1, 3, 0)
    plus2 = timezone(timedelta(hours=2))  # 05:30+02 is 03:30 UTC: today's 03:00 has passed
    assert next_fire("cron(0 3 * * ? *)", datetime(2024, 5, 1, 5, 30, tzinfo=plus2)) == utc(2024, 5, 2, 3, 0)


@pytest.mark.parametrize(
    "expr",
    [
        "cron(0 3 * * *)",  # five fields (Unix cron)
        "cron(0 3 * * * *)",  # neither day field is ?
        "cron(0 3 ? * ? *)",  # both are
        "cron(0 3 L * ? *)",
        "cron(61 3 * * ? *)",
        "cron(0 3 * * ? 1900)",
        "0 3 * * ? *",
        "rate(0 minutes)",
    ],
)
def test_bad_expressions_are_refused(expr: str) -> None:
    with pytest.raises(ValueError):
        next_fire(expr, utc(2024, 1, 1))


def test_never_firing_expression_is_refused() -> None:
    with pytest.raises(ValueError):
        next_fire("cron(0 0 31 FEB ? *)", utc(2024, 1, 1))


def test_parse_cron_fields() -> None:
    cron = parse_cron("cron(0 3 * * ? *)")
    assert cron.minutes == {0} and cron.hours == {3} and cron.days == set(range(1, 32))
    assert cron.weekdays is None and cron.years is None


class WatchedClock:
    """The scheduler's clock: the test sets the time, and can wait until the loop has looked at it again.
    Each read wakes the waiters, so a wait ends on the loop's own progress, not after a guessed sleep."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.reads = 0
        self._seen = threading.Condition()

    def __call__(self) -> datetime:
        with self._seen:
            self.reads += 1
            self._seen.notify_all()
            return self.now

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
        """True once predicate holds at a read of the clock (False only if the loop stopped reading it)."""
        with self._seen:
            return self._seen.wait_for(predicate, timeout_s)

    def wait_reads(self, n: int) -> bool:
        start = self.reads
        return self.wait_for(lambda: self.reads >= start + n)


def test_scheduler_fires_at_each_fire_time_with_a_fake_clock() -> None:
    clock = WatchedClock(utc(2024, 5, 1, 10, 4, 59))
    calls: list[datetime] = []

    def fire() -> None:
        calls.append(clock.now)
        if len(calls) == 1:
            raise RuntimeError("a failed start is logged; the schedule goes on")

    scheduler = Scheduler("cron(*/5 * * * ? *)", fire, clock=clock, tick_s=0.005).start()
    try:
        assert clock.wait_for(lambda: scheduler.next_at == utc(2024, 5, 1, 10, 5))
        assert clock.wait_reads(3)  # the loop has gone round three times, seeing 10:04:59 ...
        assert calls == []  # ... and fired nothing before the fire time
        clock.now = utc(2024, 5, 1, 10, 5, 1)
        assert clock.wait_for(lambda: scheduler.next_at == utc(2024, 5, 1, 10, 10))
        assert calls == [utc(2024, 5, 1, 10, 5, 1)]
        clock.now = utc(2024, 5, 1, 10, 10, 0)
        assert clock.wait_for(lambda: len(calls) == 2)
        assert calls[1] == utc(2024, 5, 1, 10, 10, 0)
    finally:
        scheduler.stop()
    assert scheduler._thread is not None and not scheduler._thread.is_alive()


def test_scheduler_rejects_bad_expression() -> None:
    with pytest.raises(ValueError):
        Scheduler("cron(0 3 * * *)", lambda: None)
