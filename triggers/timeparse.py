"""Time-pattern evaluation for time triggers: parse, validate, and list fire times.

Everything here is UTC and timezone-aware; there is no DST to worry about. A trigger's own
``format`` decides how its ``pattern`` is read:

* ``crontab``: a 5-field cron expression (minute hour day-of-month month day-of-week), read by croniter.
* ``calendar``: iCalendar text whose first ``VEVENT`` carries at least one ``RRULE``
  (``BEGIN:VEVENT\\nRRULE:FREQ=WEEKLY;INTERVAL=1;\\nEND:VEVENT``); the ``VCALENDAR`` wrapper is
  optional and literal ``\\n`` sequences (as typed on a command line) are decoded. As in Karbor,
  the recurrence starts at the trigger's ``start_time``; a ``DTSTART`` inside the event is ignored.

Fire times are the pattern's occurrences ``t`` with ``start_time <= t <= end_time``. The module
imports nothing from Django so the scheduler and the validators share one definition.
"""
from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from croniter import croniter
from croniter.croniter import CroniterError
from dateutil.rrule import rruleset, rrulestr
from icalendar.cal import Component

UTC = dt.timezone.utc
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FORMATS = ("crontab", "calendar")
# How many upcoming fire times the minimum-interval check looks at: enough to cover a full
# day of an every-few-minutes pattern, so an irregular cron or RRULE cannot hide a short gap
# behind two well-spaced first runs.
INTERVAL_SAMPLE = 500

# Fire times further away than this are treated as "never": it bounds the search for rules
# that can never match (dateutil would otherwise scan day by day up to the year 9999).
SEARCH_HORIZON = dt.timedelta(days=100 * 366)

_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$")


class PatternError(ValueError):
    """The pattern (or a time) cannot be used; the message says why, for a 400."""


@dataclass(frozen=True)
class TimePattern:
    """A parsed pattern: ``format`` plus what is needed to enumerate occurrences."""

    format: str
    pattern: str
    rrules: tuple[str, ...] = ()

    def occurrences(
        self, *, start_time: dt.datetime, after: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> Iterator[dt.datetime]:
        """Occurrences ``t >= start_time`` and, when given, ``t > after`` and ``t <= until``, in order."""
        start_time = _aware(start_time)
        after = _aware(after) if after is not None else None
        until = _aware(until) if until is not None else None
        if self.format == "crontab":
            # croniter yields strictly after its base: start one second early so start_time itself counts.
            base = start_time - dt.timedelta(seconds=1)
            if after is not None and after > base:
                base = after
            itr = croniter(self.pattern, base)
            while True:
                try:
                    value = itr.get_next(dt.datetime).astimezone(UTC)
                except CroniterError:  # a pattern that never matches again (e.g. 30 Feb)
                    return
                if until is not None and value > until:
                    return
                yield value
        else:
            ruleset = rruleset()
            for rule in self.rrules:
                recurrence = rrulestr(rule, dtstart=_fast_forward(rule, start_time, after))
                # An UNTIL bounds dateutil's scan, which otherwise runs to year 9999 looking for
                # an occurrence of an impossible rule (30 February). COUNT and UNTIL exclude each other.
                own_until = getattr(recurrence, "_until", None)
                if until is not None and "COUNT" not in rule.upper() and (own_until is None or own_until > until):
                    recurrence = recurrence.replace(until=until)
                ruleset.rrule(recurrence)
            if after is None or after < start_time:
                values = ruleset.xafter(start_time, inc=True)
            else:
                values = ruleset.xafter(after, inc=False)
            for value in values:
                yield value.astimezone(UTC)


_FIXED_PERIODS = {
    "SECONDLY": dt.timedelta(seconds=1),
    "MINUTELY": dt.timedelta(minutes=1),
    "HOURLY": dt.timedelta(hours=1),
    "DAILY": dt.timedelta(days=1),
    "WEEKLY": dt.timedelta(weeks=1),
}


def _fast_forward(rule: str, start_time: dt.datetime, after: dt.datetime | None) -> dt.datetime:
    """A later ``dtstart`` with exactly the same occurrences after ``after``.

    dateutil walks every occurrence from ``dtstart``, so an every-two-minutes rule that started
    years ago costs seconds per lookup. For fixed-length periods (UTC has no DST) moving
    ``dtstart`` by whole multiples of ``INTERVAL`` periods keeps the lattice, the defaults taken
    from ``dtstart`` (time of day, weekday) and the BY* filtering unchanged. ``COUNT`` counts
    from ``dtstart`` and months/years vary in length, so those rules are left alone.
    """
    if after is None or after <= start_time:
        return start_time
    parts = dict(part.split("=", 1) for part in rule.upper().split(";") if "=" in part)
    period = _FIXED_PERIODS.get(parts.get("FREQ", ""))
    if period is None or "COUNT" in parts:
        return start_time
    step = period * int(parts.get("INTERVAL") or 1)
    steps = (after - start_time) // step - 1  # one period of slack before `after`
    return start_time + step * steps if steps > 0 else start_time


def parse_pattern(fmt: str, pattern: str) -> TimePattern:
    """Read ``pattern`` as ``fmt``; raise PatternError naming the problem."""
    if fmt not in FORMATS:
        raise PatternError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if not isinstance(pattern, str) or not pattern.strip():
        raise PatternError("may not be blank")
    if fmt == "crontab":
        return _parse_crontab(pattern)
    return _parse_calendar(pattern)


def _parse_crontab(pattern: str) -> TimePattern:
    fields = pattern.split()
    if len(fields) != 5:
        raise PatternError(f"a crontab pattern has 5 fields (minute hour day month weekday), got {len(fields)}")
    normalized = " ".join(fields)
    if not croniter.is_valid(normalized):
        raise PatternError(f"{pattern!r} is not a valid crontab expression")
    return TimePattern(format="crontab", pattern=normalized)


def decode_calendar(pattern: str) -> str:
    """Turn literal ``\\n`` (and ``\\r\\n``) typed on a command line into line breaks."""
    return pattern.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\r", "\n")


def _parse_calendar(pattern: str) -> TimePattern:
    text = decode_calendar(pattern).strip()
    try:
        component = Component.from_ical(text)
    except (ValueError, KeyError, IndexError) as exc:
        raise PatternError(f"not valid iCalendar text: {exc}") from None
    events = component.walk("VEVENT")
    if not events:
        raise PatternError("the calendar must contain a VEVENT")
    event = events[0]
    rrule_errors = [message for name, message in getattr(event, "errors", []) if name == "RRULE"]
    if rrule_errors:
        raise PatternError(f"invalid RRULE: {rrule_errors[0]}")
    raw = event.get("RRULE")
    if raw is None:
        raise PatternError("the first VEVENT must have an RRULE")
    rules = tuple(item.to_ical().decode() for item in (raw if isinstance(raw, list) else [raw]))
    probe_start = dt.datetime(2000, 1, 1, tzinfo=UTC)
    for rule in rules:
        try:
            rrulestr(rule, dtstart=probe_start)
        except (ValueError, TypeError) as exc:
            raise PatternError(f"invalid RRULE {rule!r}: {exc}") from None
        if not _has_matching_day(rule, probe_start):
            raise PatternError(f"RRULE {rule!r} never matches a date")
    return TimePattern(format="calendar", pattern=pattern, rrules=rules)


_DAY_FILTERS = ("BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYDAY")


def _has_matching_day(rule: str, dtstart: dt.datetime) -> bool:
    """Whether the date filters of a weekly-or-finer rule can match any day at all.

    dateutil looks for the next match of a rule such as ``FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30``
    day by day until the year 9999 (seconds of CPU); the same filters on a YEARLY rule answer in
    a fraction of that. For these frequencies BYDAY has no ordinal prefix, so it means the same.
    """
    parts = dict(part.split("=", 1) for part in rule.upper().split(";") if "=" in part)
    if parts.get("FREQ") not in _FIXED_PERIODS:
        return True
    filters = [f"{key}={parts[key]}" for key in _DAY_FILTERS if key in parts]
    if not filters:
        return True
    yearly = rrulestr(";".join(["FREQ=YEARLY", *filters, "COUNT=1"]), dtstart=dtstart)
    return yearly.after(dtstart, inc=True) is not None


def parse_time(value: str) -> dt.datetime:
    """``YYYY-MM-DD HH:MM:SS`` (a ``T`` separator is also accepted), read as UTC."""
    if not isinstance(value, str) or not _TIME_RE.match(value.strip()):
        raise PatternError("must be a UTC time formatted 'YYYY-MM-DD HH:MM:SS'")
    try:
        return dt.datetime.strptime(value.strip().replace("T", " "), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise PatternError(f"not a valid time: {exc}") from None


def format_time(value: dt.datetime) -> str:
    """The stored and returned form, ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    return _aware(value).astimezone(UTC).strftime(TIME_FORMAT)


def fire_times(
    fmt: str,
    pattern: str,
    *,
    start_time: dt.datetime,
    end_time: dt.datetime | None = None,
    after: dt.datetime | None = None,
    horizon: dt.datetime | None = None,
) -> Iterator[dt.datetime]:
    """The trigger's fire times after ``after`` (all when None), from ``start_time`` up to ``end_time``.

    Times are aware UTC datetimes in increasing order; the iterator ends at ``end_time`` (inclusive),
    at ``horizon`` (inclusive; a bound on the search, see SEARCH_HORIZON) or when the pattern has no
    more occurrences, and may be infinite otherwise.
    """
    parsed = parse_pattern(fmt, pattern)
    bounds = [_aware(value) for value in (end_time, horizon) if value is not None]
    yield from parsed.occurrences(start_time=start_time, after=after, until=min(bounds) if bounds else None)


def next_fire_time(
    fmt: str,
    pattern: str,
    *,
    start_time: dt.datetime,
    end_time: dt.datetime | None = None,
    after: dt.datetime,
) -> dt.datetime | None:
    """The first fire time strictly after ``after`` (within SEARCH_HORIZON), or None when the trigger is done."""
    horizon = max(_aware(after), _aware(start_time)) + SEARCH_HORIZON
    return next(fire_times(fmt, pattern, start_time=start_time, end_time=end_time, after=after, horizon=horizon), None)


def min_gap(times: list[dt.datetime]) -> dt.timedelta | None:
    """The shortest gap between consecutive times, or None for fewer than two."""
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return min(gaps) if gaps else None


def sample_fire_times(
    fmt: str,
    pattern: str,
    *,
    start_time: dt.datetime,
    end_time: dt.datetime | None = None,
    after: dt.datetime | None = None,
    count: int = INTERVAL_SAMPLE,
) -> list[dt.datetime]:
    """Up to ``count`` fire times within SEARCH_HORIZON (see fire_times), for interval checks and previews."""
    horizon = max(_aware(after or start_time), _aware(start_time)) + SEARCH_HORIZON
    times = fire_times(fmt, pattern, start_time=start_time, end_time=end_time, after=after, horizon=horizon)
    return list(itertools.islice(times, count))


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
