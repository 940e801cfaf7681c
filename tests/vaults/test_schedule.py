"""Rule C1: when a policy's runs fall, in its own time zone, across days, weeks and daylight-saving changes."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vaults.schedule import Schedule, ScheduleError, parse_duration, parse_times, parse_weekdays

NY = ZoneInfo("America/New_York")  # 2026: clocks jump 02:00 -> 03:00 on March 8, fall 02:00 -> 01:00 on Nov 1
SH = ZoneInfo("Asia/Shanghai")


def local(runs, tz):
    return [run.astimezone(tz).strftime("%a %Y-%m-%d %H:%M") for run in runs]


def test_every_day_at_a_time_follows_the_wall_clock_in_its_zone():
    nightly = Schedule(zone="Asia/Shanghai", weekdays=tuple(range(7)), times=((2, 0),)).check()
    start = datetime(2026, 11, 30, 12, 0, tzinfo=SH)
    assert local(nightly.next_runs(start, 3), SH) == [
        "Tue 2026-12-01 02:00",
        "Wed 2026-12-02 02:00",
        "Thu 2026-12-03 02:00",
    ]
    assert nightly.next_after(start).tzinfo == UTC
    assert nightly.describe() == "every day at 02:00 (Asia/Shanghai)"


def test_chosen_weekdays_and_times_across_weeks():
    twice = Schedule(zone="UTC", weekdays=parse_weekdays("mon,thu"), times=parse_times("14:30,02:00")).check()
    runs = twice.next_runs(datetime(2026, 11, 30, 3, 0, tzinfo=UTC), 5)  # a Monday, after 02:00
    assert local(runs, UTC) == [
        "Mon 2026-11-30 14:30", "Thu 2026-12-03 02:00", "Thu 2026-12-03 14:30", "Mon 2026-12-07 02:00",
        "Mon 2026-12-07 14:30",
    ]  # fmt: skip
    assert twice.describe() == "Mon, Thu at 02:00, 14:30 (UTC)"


def test_a_time_the_clocks_skip_runs_at_the_next_valid_minute_once():
    tz = "America/New_York"
    at_0230 = Schedule(zone=tz, weekdays=tuple(range(7)), times=((2, 30),)).check()
    runs = at_0230.next_runs(datetime(2026, 3, 7, 12, 0, tzinfo=NY), 3)
    assert local(runs, NY) == ["Sun 2026-03-08 03:00", "Mon 2026-03-09 02:30", "Tue 2026-03-10 02:30"]
    # two times inside the gap fall on the same minute: it runs once
    both = Schedule(zone=tz, weekdays=tuple(range(7)), times=((2, 15), (2, 40))).check()
    runs = both.next_runs(datetime(2026, 3, 7, 12, 0, tzinfo=NY), 3)
    assert local(runs, NY) == ["Sun 2026-03-08 03:00", "Mon 2026-03-09 02:15", "Mon 2026-03-09 02:40"]


def test_a_time_that_happens_twice_runs_the_first_time_only():
    at_0130 = Schedule(zone="America/New_York", weekdays=tuple(range(7)), times=((1, 30),)).check()
    runs = at_0130.next_runs(datetime(2026, 10, 31, 12, 0, tzinfo=NY), 2)
    assert [r.isoformat() for r in runs] == ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
    # asked between the two 01:30s, it does not go back to the first one
    between = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 01:00 EST, the second 01:00
    assert at_0130.next_after(between).isoformat() == "2026-11-02T06:30:00+00:00"


def test_every_n_hours_counts_elapsed_time_through_a_dst_change():
    start = datetime(2026, 3, 7, 20, 0, tzinfo=NY)
    every_6h = Schedule(zone="America/New_York", every=parse_duration("6h"), start=start).check()
    runs = every_6h.next_runs(start, 4)
    assert [(b - a) for a, b in zip(runs, runs[1:], strict=False)] == [timedelta(hours=6)] * 3
    assert local(runs, NY) == [
        "Sun 2026-03-08 03:00",
        "Sun 2026-03-08 09:00",
        "Sun 2026-03-08 15:00",
        "Sun 2026-03-08 21:00",
    ]
    assert every_6h.next_after(start - timedelta(days=1)) == start  # before its start: the start


def test_every_n_days_keeps_the_time_of_day():
    start = datetime(2026, 3, 6, 1, 0, tzinfo=NY)
    every_2d = Schedule(zone="America/New_York", every=parse_duration("2d"), start=start).check()
    assert local(every_2d.next_runs(start, 3), NY) == [
        "Sun 2026-03-08 01:00",
        "Tue 2026-03-10 01:00",
        "Thu 2026-03-12 01:00",
    ]
    assert every_2d.describe() == "every 2 days from 2026-03-06 01:00 (America/New_York)"


@pytest.mark.parametrize(
    "schedule,says",
    [
        (Schedule(zone="UTC", weekdays=(), times=((2, 0),)), "never runs"),
        (Schedule(zone="UTC", weekdays=(0,), times=()), "never runs"),
        (Schedule(zone="UTC", every=timedelta(minutes=5), start=datetime(2026, 1, 1, tzinfo=UTC)), "at most every 10"),
        (Schedule(zone="UTC", weekdays=(0,), times=((2, 0), (2, 5))), "less than 10 minutes apart"),
        (Schedule(zone="UTC", weekdays=tuple(range(7)), times=((0, 3), (23, 58))), "less than 10 minutes apart"),
        (Schedule(zone="Mars/Olympus", weekdays=(0,), times=((2, 0),)), "not a time zone"),
    ],
)
def test_schedules_that_never_fire_or_fire_too_often_are_refused(schedule, says):
    with pytest.raises(ScheduleError, match=says):
        schedule.check()


@pytest.mark.parametrize("text", ["", "5", "h", "-1h", "1w", "1.5h"])
def test_a_duration_is_a_number_and_m_h_or_d(text):
    with pytest.raises(ScheduleError):
        parse_duration(text)
