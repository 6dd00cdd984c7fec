"""A tiny stand-in for the EventBridge schedule, which moto stores but never fires.

`next_fire` understands EventBridge `cron(minutes hours day-of-month month day-of-week year)` with numbers,
names (JAN-DEC, SUN-SAT), `*`, `?`, lists, ranges and steps (`*/5`, `10-40/10`), in UTC, and
`rate(N minute|minutes|hour|hours|day|days)`. The special forms L, W and # are refused.
`Scheduler(expr, fire).start()` calls `fire()` at each fire time on a daemon thread until `.stop()`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .background import BackgroundLoop

LOG = logging.getLogger(__name__)

_MONTHS = {
    m: i + 1 for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))
}
_DAYS = {d: i + 1 for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}  # 1 = Sunday
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_SEARCH_YEARS = 8  # how far ahead next_fire looks before deciding the expression never fires


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: `?` (the day-of-week field decides)
    months: frozenset[int]
    weekdays: frozenset[int] | None  # EventBridge numbering, 1 = Sunday; None: `?`
    years: frozenset[int] | None  # None: any year

    def day_matches(self, day: datetime) -> bool:
        if self.years is not None and day.year not in self.years:
            return False
        if day.month not in self.months:
            return False
        if self.days is not None and day.day not in self.days:
            return False
        # Python: Monday = 0 ... Sunday = 6; EventBridge: Sunday = 1 ... Saturday = 7.
        return self.weekdays is None or (day.weekday() + 1) % 7 + 1 in self.weekdays


def _field(text: str, lo: int, hi: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.upper()
        if names and token in names:
            return names[token]
        if not token.isdigit():
            raise ValueError(f"bad cron value {token!r}")
        return int(token)

    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad cron step in {part!r}")
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = number(a), number(b)
        else:
            start = number(base)
            end = hi if step_text else start
        if not (lo <= start <= hi and lo <= end <= hi) or start > end:
            raise ValueError(f"cron value {part!r} outside {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_cron(expr: str) -> Cron:
    match = _CRON.match(expr.strip())
    if not match:
        raise ValueError(f"not a cron(...) expression: {expr!r}")
    fields = match.group(1).split()
    if len(fields) != 6:
        raise ValueError(f"EventBridge cron needs 6 fields (min hour dom month dow year): {expr!r}")
    if any(c in f.upper() for f in fields for c in "LW#"):
        raise ValueError(f"L, W and # are not supported locally: {expr!r}")
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ValueError(f"exactly one of day-of-month and day-of-week must be '?': {expr!r}")
    return Cron(
        minutes=_field(minute, 0, 59),
        hours=_field(hour, 0, 23),
        days=None if dom == "?" else _field(dom, 1, 31),
        months=_field(month, 1, 12, _MONTHS),
        weekdays=None if dow == "?" else _field(dow, 1, 7, _DAYS),
        years=None if year == "*" else _field(year, 1970, 2199),
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def next_fire(expr: str, after: datetime) -> datetime:
    """The first fire time strictly after `after` (naive means UTC), as an aware UTC datetime."""
    after = _utc(after)
    rate = _RATE.match(expr.strip())
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        if amount < 1:
            raise ValueError(f"rate must be at least 1: {expr!r}")
        return after + timedelta(**{f"{unit}s": amount})
    cron = parse_cron(expr)
    start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    hours, minutes = sorted(cron.hours), sorted(cron.minutes)
    for _ in range(366 * _SEARCH_YEARS):
        if cron.day_matches(day):
            for hour in hours:
                for minute in minutes:
                    candidate = day.replace(hour=hour, minute=minute)
                    if candidate >= start:
                        return candidate
        day += timedelta(days=1)
    raise ValueError(f"{expr!r} does not fire within {_SEARCH_YEARS} years after {after.isoformat()}")


class Scheduler(BackgroundLoop):
    """Calls `fire()` at every fire time of `expr` on a daemon thread. An exception in `fire` is logged and
    the schedule goes on."""

    THREAD_NAME = "rag-autotune-scheduler"

    def __init__(
        self,
        expr: str,
        fire: Callable[[], None],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tick_s: float = 60.0,
    ) -> None:
        next_fire(expr, clock())  # refuse a bad expression now, not on the thread
        self.expr = expr
        self._fire = fire
        self._clock = clock
        self._tick_s = tick_s  # the longest sleep before re-reading the clock (suspend, clock changes)
        super().__init__()
        self.next_at: datetime | None = None

    def _run(self) -> None:
        self.next_at = next_fire(self.expr, self._clock())
        while not self._stop.is_set():
            remaining = (self.next_at - self._clock()).total_seconds()
            if remaining > 0:
                self._stop.wait(min(remaining, self._tick_s))
                continue
            try:
                self._fire()
            except Exception:
                LOG.exception("scheduled run (%s) failed to start", self.expr)
            self.next_at = next_fire(self.expr, max(self._clock(), self.next_at))
