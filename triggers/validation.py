"""Validation of time-trigger properties and scheduled-operation definitions.

Both return what is stored: Karbor keeps trigger ``properties`` and ``operation_definition``
as dicts of strings, so every accepted value is normalised to its string form here.
Every problem is an ``InvalidInput`` naming the offending key (``properties.window``…).
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from karbor_site.errors import InvalidInput
from karbor_site.db import is_uuid_like
from triggers import timeparse

TRIGGER_TYPES = ("time",)
TIME_PROPERTIES = ("format", "pattern", "start_time", "end_time", "window")
# Karbor's two retention keys, then the grandfather-father-son ones: all integers >= 1.
RETENTION_KEYS = ("max_backups", "retention_duration")
GFS_KEYS = ("keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
RETENTION_PROTECT_KEYS = RETENTION_KEYS + GFS_KEYS
_INT_RE = re.compile(r"^\s*[-+]?\d+\s*$")


def _prop(key: str) -> str:
    return f"properties.{key}"


def trigger_type_clean(value: Any) -> str:
    if value not in TRIGGER_TYPES:
        raise InvalidInput(f"Invalid trigger type: {value}", fields={"type": [f"must be one of: {', '.join(TRIGGER_TYPES)}"]})
    return value


def int_value(value: Any, field: str) -> int:
    """An int given as a JSON integer or a numeric string (the karbor CLI sends strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not _INT_RE.match(value)):
        raise InvalidInput.for_field(field, f"must be an integer or a numeric string, got {value!r}")
    return int(value)


def _string(properties: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = properties.get(key)
    if value is None:
        if required:
            raise InvalidInput.for_field(_prop(key), "This field is required.")
        return None
    if not isinstance(value, str):
        raise InvalidInput.for_field(_prop(key), f"must be a string, got {type(value).__name__}")
    return value


def time_properties_clean(
    properties: Any, *, now: dt.datetime, require_start_time: bool = False
) -> dict[str, str]:
    """Check a time trigger's properties and return them as stored (all strings).

    Raises InvalidInput naming the first offending property. ``now`` is the reference for the
    default ``start_time`` and for "has a future fire time".
    """
    if not isinstance(properties, Mapping):
        raise InvalidInput.for_field("properties", "must be a JSON object")
    unknown = sorted(set(properties) - set(TIME_PROPERTIES))
    if unknown:
        raise InvalidInput.for_field(
            _prop(unknown[0]), f"unknown property; allowed: {', '.join(TIME_PROPERTIES)}"
        )

    fmt = _string(properties, "format", required=True)
    if fmt not in timeparse.FORMATS:
        raise InvalidInput.for_field(_prop("format"), f"must be one of: {', '.join(timeparse.FORMATS)}")
    pattern = _string(properties, "pattern", required=True)
    try:
        timeparse.parse_pattern(fmt, pattern)
    except timeparse.PatternError as exc:
        raise InvalidInput.for_field(_prop("pattern"), f"{exc} (format {fmt})") from None

    min_window, max_window = settings.KARBOR_TRIGGER_MIN_WINDOW, settings.KARBOR_TRIGGER_MAX_WINDOW
    window = min_window
    if properties.get("window") is not None:
        window = int_value(properties["window"], _prop("window"))
        if not min_window <= window <= max_window:
            raise InvalidInput.for_field(_prop("window"), f"must be between {min_window} and {max_window}")

    raw_start = _string(properties, "start_time", required=False)
    if raw_start is None and require_start_time:
        raise InvalidInput("start_time should be supplied", fields={_prop("start_time"): ["start_time should be supplied"]})
    start_time = _time(raw_start, "start_time") if raw_start is not None else now.replace(microsecond=0)
    raw_end = _string(properties, "end_time", required=False)
    end_time = _time(raw_end, "end_time") if raw_end is not None else None
    if end_time is not None and end_time <= start_time:
        raise InvalidInput.for_field(_prop("end_time"), "must be later than start_time")

    upcoming = timeparse.sample_fire_times(fmt, pattern, start_time=start_time, end_time=end_time, after=now)
    if not upcoming:
        field = "end_time" if end_time is not None else "pattern"
        raise InvalidInput.for_field(_prop(field), "the trigger has no fire time in the future")
    gap = timeparse.min_gap(upcoming)
    min_interval = settings.KARBOR_TRIGGER_MIN_INTERVAL
    if gap is not None and gap.total_seconds() < min_interval:
        raise InvalidInput.for_field(
            _prop("pattern"),
            f"fire times must be at least {min_interval} seconds apart; "
            f"{format_gap(gap)} between {timeparse.format_time(_gap_start(upcoming, gap))} and the next",
        )

    cleaned = {
        "format": fmt,
        "pattern": pattern,
        "start_time": timeparse.format_time(start_time),
        "window": str(window),
    }
    if end_time is not None:
        cleaned["end_time"] = timeparse.format_time(end_time)
    return cleaned


def _time(value: str, key: str) -> dt.datetime:
    try:
        return timeparse.parse_time(value)
    except timeparse.PatternError as exc:
        raise InvalidInput.for_field(_prop(key), str(exc)) from None


def _gap_start(times: list[dt.datetime], gap: dt.timedelta) -> dt.datetime:
    return next(earlier for earlier, later in zip(times, times[1:]) if later - earlier == gap)


def format_gap(gap: dt.timedelta) -> str:
    seconds = int(gap.total_seconds())
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def operation_definition_clean(definition: Any, *, operation_type: str) -> dict[str, str]:
    """Check an operation definition's shape; return it as stored (dict of strings).

    ``provider_id`` and ``plan_id`` are required UUIDs. For ``retention_protect`` the optional
    ``max_backups``, ``retention_duration`` (days) and ``keep_daily/weekly/monthly/yearly`` must
    be integers of at least 1 (leave a key out for "no limit"); a ``protect`` operation refuses
    them, since it would silently never apply them. Other keys are kept, as Karbor keeps them,
    provided their values are scalars.
    """
    if not isinstance(definition, Mapping):
        raise InvalidInput.for_field("operation_definition", "must be a JSON object")
    cleaned: dict[str, str] = {}
    for key in ("provider_id", "plan_id"):
        value = definition.get(key)
        field = f"operation_definition.{key}"
        if value is None:
            raise InvalidInput.for_field(field, "This field is required.")
        if not isinstance(value, str) or not is_uuid_like(value):
            raise InvalidInput.for_field(field, f"{value!r} is not a valid UUID")
        cleaned[key] = value
    for key, value in definition.items():
        if key in cleaned:
            continue
        field = f"operation_definition.{key}"
        if key in RETENTION_PROTECT_KEYS:
            if operation_type != "retention_protect":
                raise InvalidInput.for_field(field, "only a retention_protect operation applies retention")
            number = int_value(value, field)
            if number < 1:
                raise InvalidInput.for_field(field, f"must be at least 1, got {number} (leave it out for no limit)")
            cleaned[key] = str(number)
            continue
        if isinstance(value, bool):
            cleaned[key] = str(value)  # Karbor's str(): True → "True"
        elif isinstance(value, (str, int, float)):
            cleaned[key] = str(value)
        else:
            raise InvalidInput.for_field(field, "must be a string, number or boolean")
    return cleaned
