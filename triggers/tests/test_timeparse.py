"""Fire-time evaluation for crontab and calendar patterns (all UTC)."""
import datetime as dt
import itertools

import pytest

from triggers.timeparse import (
    UTC,
    PatternError,
    decode_calendar,
    fire_times,
    format_time,
    min_gap,
    next_fire_time,
    parse_pattern,
    parse_time,
    sample_fire_times,
)

START = dt.datetime(2026, 1, 1, 2, 0, 0, tzinfo=UTC)  # a Thursday


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def vevent(rrule: str) -> str:
    return f"BEGIN:VEVENT\nRRULE:{rrule}\nEND:VEVENT"


def test_crontab_fire_times_include_start_time_when_it_matches():
    assert sample_fire_times("crontab", "0 2 * * *", start_time=START, count=3) == [
        utc(2026, 1, 1, 2),
        utc(2026, 1, 2, 2),
        utc(2026, 1, 3, 2),
    ]


def test_crontab_fire_times_after_a_moment_are_strictly_later():
    assert sample_fire_times("crontab", "*/15 * * * *", start_time=START, after=utc(2026, 3, 5, 10, 15), count=2) == [
        utc(2026, 3, 5, 10, 30),
        utc(2026, 3, 5, 10, 45),
    ]


def test_crontab_weekday_pattern():
    # Mondays and Fridays at 23:30.
    times = sample_fire_times("crontab", "30 23 * * 1,5", start_time=START, count=3)
    assert times == [utc(2026, 1, 2, 23, 30), utc(2026, 1, 5, 23, 30), utc(2026, 1, 9, 23, 30)]


def test_crontab_start_time_with_seconds_waits_for_the_next_minute():
    times = sample_fire_times("crontab", "* * * * *", start_time=utc(2026, 1, 1, 0, 0, 30), count=2)
    assert times == [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2)]


@pytest.mark.parametrize(
    ("rrule", "expected"),
    [
        ("FREQ=HOURLY;INTERVAL=1;", [utc(2026, 1, 1, 2), utc(2026, 1, 1, 3), utc(2026, 1, 1, 4)]),
        ("FREQ=DAILY;INTERVAL=2", [utc(2026, 1, 1, 2), utc(2026, 1, 3, 2), utc(2026, 1, 5, 2)]),
        ("FREQ=WEEKLY;INTERVAL=1;", [utc(2026, 1, 1, 2), utc(2026, 1, 8, 2), utc(2026, 1, 15, 2)]),
        ("FREQ=WEEKLY;BYDAY=MO;BYHOUR=4;BYMINUTE=0;BYSECOND=0", [utc(2026, 1, 5, 4), utc(2026, 1, 12, 4), utc(2026, 1, 19, 4)]),
        ("FREQ=MINUTELY;INTERVAL=2", [utc(2026, 1, 1, 2, 0), utc(2026, 1, 1, 2, 2), utc(2026, 1, 1, 2, 4)]),
    ],
)
def test_calendar_rrules_recur_from_start_time(rrule, expected):
    assert sample_fire_times("calendar", vevent(rrule), start_time=START, count=3) == expected


def test_calendar_pattern_with_vcalendar_wrapper_and_escaped_newlines():
    pattern = r"BEGIN:VCALENDAR\nBEGIN:VEVENT\nRRULE:FREQ=DAILY;INTERVAL=1;\nEND:VEVENT\nEND:VCALENDAR"
    assert "\\n" in pattern
    assert sample_fire_times("calendar", pattern, start_time=START, count=2) == [utc(2026, 1, 1, 2), utc(2026, 1, 2, 2)]


def test_calendar_after_skips_to_the_next_occurrence():
    assert next_fire_time("calendar", vevent("FREQ=HOURLY"), start_time=START, after=utc(2026, 5, 1, 0, 30)) == utc(
        2026, 5, 1, 1
    )


def test_calendar_count_and_until_end_the_sequence():
    assert len(list(fire_times("calendar", vevent("FREQ=DAILY;COUNT=3"), start_time=START))) == 3
    until = list(fire_times("calendar", vevent("FREQ=DAILY;UNTIL=20260104T000000Z"), start_time=START))
    assert until[-1] == utc(2026, 1, 3, 2)


def test_end_time_is_inclusive_and_stops_the_iteration():
    times = list(fire_times("crontab", "0 * * * *", start_time=START, end_time=utc(2026, 1, 1, 5)))
    assert times == [utc(2026, 1, 1, 2), utc(2026, 1, 1, 3), utc(2026, 1, 1, 4), utc(2026, 1, 1, 5)]


def test_next_fire_time_is_none_after_end_time():
    assert next_fire_time("crontab", "0 * * * *", start_time=START, end_time=utc(2026, 1, 1, 5), after=utc(2026, 2, 1)) is None


def test_pattern_that_never_matches_has_no_fire_times():
    assert sample_fire_times("crontab", "0 0 30 2 *", start_time=START) == []


def test_naive_datetimes_are_read_as_utc():
    naive = list(itertools.islice(fire_times("crontab", "0 2 * * *", start_time=dt.datetime(2026, 1, 1, 2)), 1))
    assert naive == [utc(2026, 1, 1, 2)]


def test_min_gap_finds_the_shortest_gap_not_the_first():
    # Every hour at :00 and :01 — the first two runs are a minute apart, later ones 59 minutes.
    times = sample_fire_times("crontab", "0,1 * * * *", start_time=START, count=10)
    assert min_gap(times) == dt.timedelta(minutes=1)
    assert min_gap(times[:1]) is None


@pytest.mark.parametrize(
    ("fmt", "pattern", "reason"),
    [
        ("crontab", "61 * * * *", "not a valid crontab"),
        ("crontab", "0 2 * *", "5 fields"),
        ("crontab", "0 0 2 * * * *", "5 fields"),
        ("crontab", "", "blank"),
        ("calendar", "BEGIN:VEVENT\nEND:VEVENT", "must have an RRULE"),
        ("calendar", "BEGIN:VCALENDAR\nEND:VCALENDAR", "must contain a VEVENT"),
        ("calendar", "not icalendar", "not valid iCalendar"),
        ("calendar", "BEGIN:VEVENT\nRRULE:FREQ=SOMETIMES\nEND:VEVENT", "invalid RRULE"),
        ("ical", "0 * * * *", "unknown format"),
    ],
)
def test_bad_patterns_are_refused_with_a_reason(fmt, pattern, reason):
    with pytest.raises(PatternError, match=reason):
        parse_pattern(fmt, pattern)


def test_decode_calendar_turns_literal_backslash_n_into_newlines():
    assert decode_calendar(r"A\nB\r\nC") == "A\nB\nC"


def test_times_parse_with_space_or_t_and_format_with_space():
    assert parse_time("2026-01-02 03:04:05") == utc(2026, 1, 2, 3, 4, 5)
    assert parse_time("2026-01-02T03:04:05") == utc(2026, 1, 2, 3, 4, 5)
    assert format_time(utc(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"
    for bad in ("2026-01-02", "2026-13-02 00:00:00", "yesterday", "2026-01-02 03:04:05Z"):
        with pytest.raises(PatternError):
            parse_time(bad)


@pytest.mark.parametrize(
    "rrule",
    [
        "FREQ=MINUTELY;INTERVAL=7",
        "FREQ=HOURLY;INTERVAL=5;BYMINUTE=10,50",
        "FREQ=DAILY;INTERVAL=3;BYHOUR=1,13",
        "FREQ=WEEKLY;INTERVAL=3;BYDAY=MO,WE",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=SU;WKST=SU",
        "FREQ=SECONDLY;INTERVAL=90",
        "FREQ=MONTHLY;BYMONTHDAY=31",
        "FREQ=DAILY;COUNT=4000",
    ],
)
def test_skipping_ahead_gives_the_same_fire_times_as_walking_from_the_start(rrule):
    start = utc(2026, 7, 31, 13, 7, 11)
    after = utc(2026, 11, 25, 8, 30, 5)
    pattern = vevent(rrule)
    walked = list(itertools.islice((t for t in fire_times("calendar", pattern, start_time=start) if t > after), 20))
    assert sample_fire_times("calendar", pattern, start_time=start, after=after, count=20) == walked


def test_rrule_that_can_never_match_is_refused_quickly():
    import time

    began = time.monotonic()
    with pytest.raises(PatternError, match="never matches"):
        parse_pattern("calendar", vevent("FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30"))
    assert time.monotonic() - began < 3


def test_sparse_rrule_is_still_found():
    # 29 February falling on a Monday: 2044 is the next one.
    times = sample_fire_times("calendar", vevent("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO"), start_time=START, count=1)
    assert times == [utc(2044, 2, 29, 2)]
