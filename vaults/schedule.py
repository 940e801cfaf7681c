"""When a backup policy's runs fall (rule C1), in the policy's own time zone, with dateutil's rrule.

Two kinds of schedule:
- every N minutes, hours or days from a start time. Minutes and hours count elapsed time, so a
  daylight-saving change does not move them; days follow the wall clock (every 2 days at the start's
  time of day).
- chosen weekdays at chosen times of day, on the wall clock.

A wall-clock time the clocks skip on a DST day (02:30 when they jump from 02:00 to 03:00) runs at the
next valid minute, once; a time that happens twice (when they fall back) runs the first time only.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule

# A schedule may not fire more often than this (rule C1: a policy is not a busy loop).
MIN_GAP = timedelta(minutes=10)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RRULE_DAYS = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)
MINUTE = timedelta(minutes=1)


class ScheduleError(ValueError):
    """A schedule that never fires, fires too often, or names no real time zone; the message says which."""


def zone_of(name):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r} is not a time zone (for example Asia/Shanghai or UTC).") from None


def parse_duration(text):
    """'10m', '6h', '1d', '7d' -> timedelta."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    text = (text or "").strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ScheduleError(f"{text!r} is not a duration: a whole number and m, h or d (10m, 6h, 1d).")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def parse_times(text):
    """'02:00,14:30' -> ((2, 0), (14, 30))."""
    times = []
    for part in (text or "").split(","):
        hour, _, minute = part.strip().partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
            raise ScheduleError(f"{part.strip()!r} is not a time of day (HH:MM).")
        times.append((int(hour), int(minute)))
    return tuple(sorted(set(times)))


def parse_weekdays(text):
    """'mon,thu' -> (0, 3)."""
    days = []
    for part in (text or "").split(","):
        name = part.strip().lower()[:3]
        if name not in WEEKDAYS:
            raise ScheduleError(f"{part.strip()!r} is not a weekday (mon, tue, ... sun).")
        days.append(WEEKDAYS.index(name))
    return tuple(sorted(set(days)))


@dataclass(frozen=True)
class Schedule:
    zone: str = "UTC"
    every: timedelta | None = None  # every N minutes, hours or days...
    start: datetime | None = None  # ...from this moment (aware)
    weekdays: tuple = field(default_factory=tuple)  # or on these days (0 is Monday)...
    times: tuple = field(default_factory=tuple)  # ...at these (hour, minute) of the wall clock

    def check(self):
        """ScheduleError unless the schedule fires, at most every MIN_GAP, in a real time zone."""
        zone_of(self.zone)
        if self.every is not None:
            if self.weekdays or self.times:
                raise ScheduleError("Give either an interval or weekdays and times, not both.")
            if self.every < MIN_GAP:
                raise ScheduleError(f"A policy runs at most every {MIN_GAP.seconds // 60} minutes.")
            if self.start is None or self.start.tzinfo is None:
                raise ScheduleError("An interval needs a start time.")
            return self
        if not self.weekdays or not self.times:
            raise ScheduleError("Choose at least one weekday and one time of day, or an interval: it never runs.")
        minutes = sorted(h * 60 + m for h, m in self.times)
        gaps = [b - a for a, b in zip(minutes, minutes[1:], strict=False)]
        if len(self.weekdays) == 7:
            gaps.append(minutes[0] + 24 * 60 - minutes[-1])
        if gaps and min(gaps) < MIN_GAP.seconds // 60:
            raise ScheduleError(f"Two runs are less than {MIN_GAP.seconds // 60} minutes apart.")
        return self

    @property
    def tz(self):
        return zone_of(self.zone)

    def next_after(self, moment):
        """The first run strictly after `moment` (aware), as an aware UTC datetime."""
        if self.every is not None and not _whole_days(self.every):
            start = self.start.astimezone(UTC)
            if moment < start:
                return start
            return start + self.every * ((moment - start) // self.every + 1)
        rules = self._wall_clock_rules(moment)
        local = moment.astimezone(self.tz).replace(tzinfo=None)
        candidate = local
        while True:
            candidate = rules.after(candidate)
            run = _localize(candidate, self.tz).astimezone(UTC)
            if run > moment:
                return run

    def next_runs(self, moment, count=5):
        runs = []
        for _ in range(count):
            moment = self.next_after(moment)
            runs.append(moment)
        return runs

    def _wall_clock_rules(self, moment):
        tz = self.tz
        rules = rrule.rruleset()
        if self.every is not None:  # every N days at the start's time of day
            first = self.start.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
            rules.rrule(rrule.rrule(rrule.DAILY, interval=self.every.days, dtstart=first))
            return rules
        # from a day before, so that a run early in today's local date is not missed
        base = (moment.astimezone(tz) - timedelta(days=1)).replace(
            tzinfo=None, hour=0, minute=0, second=0, microsecond=0
        )
        for hour, minute in self.times:
            rules.rrule(
                rrule.rrule(
                    rrule.WEEKLY,
                    byweekday=[_RRULE_DAYS[d] for d in self.weekdays],
                    byhour=hour,
                    byminute=minute,
                    bysecond=0,
                    dtstart=base,
                )
            )
        return rules

    def describe(self):
        """The schedule in words: 'every day at 02:00 (Asia/Shanghai)'."""
        if self.every is not None:
            start = self.start.astimezone(self.tz)
            return f"every {_duration_words(self.every)} from {start:%Y-%m-%d %H:%M} ({self.zone})"
        times = ", ".join(f"{h:02d}:{m:02d}" for h, m in self.times)
        if len(self.weekdays) == 7:
            days = "every day"
        else:
            days = ", ".join(WEEKDAYS[d].capitalize() for d in self.weekdays)
        return f"{days} at {times} ({self.zone})"


def _whole_days(every):
    return every.seconds == 0 and every.microseconds == 0 and every.days >= 1


def _duration_words(every):
    if _whole_days(every):
        return "day" if every.days == 1 else f"{every.days} days"
    minutes = int(every.total_seconds() // 60)
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"


def _localize(naive, tz):
    """A wall-clock time made aware: the first of a repeated time; a skipped one moves to the next valid minute."""
    aware = naive.replace(tzinfo=tz)
    while aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != aware.replace(tzinfo=None):
        aware = (aware.replace(tzinfo=None) + MINUTE).replace(tzinfo=tz)
    return aware
