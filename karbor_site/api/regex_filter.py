"""Karbor's regular-expression list filters (``name``, ``description``, ``properties``, …), bounded.

Karbor hands these patterns to the database's REGEXP. A tenant's pattern such as ``(a+)+$``
backtracks exponentially in a backtracking engine (SQLite's REGEXP is Python's ``re``), tying up
a worker for minutes. Here the pattern is capped in length and matched in Python with the
``regex`` module, whose matcher takes a timeout, against the rows the caller may list: the
whole filter gets one time budget, and running out of it is a 400 naming the field. The
semantics are the same on every database (a search, as REGEXP does; case-sensitive).
"""
from __future__ import annotations

import time

import django_filters
import regex
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast

from karbor_site.api.exceptions import InvalidInput

# Longer than any stored name needs; long patterns are also the costly ones to compile.
MAX_PATTERN_LENGTH = 255
# Total matching time one filter may take, whatever the number of rows.
MATCH_TIME_BUDGET = 0.5
_TEXT = "_regex_filter_text"


def regex_filter(queryset: QuerySet, field: str, pattern: str) -> QuerySet:
    """Rows of ``queryset`` whose ``field`` (its stored text) contains a match of ``pattern``.

    InvalidInput names ``field`` when the pattern is too long, invalid, or too slow to match.
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidInput.for_field(field, f"regular expression longer than {MAX_PATTERN_LENGTH} characters")
    try:
        compiled = regex.compile(pattern, flags=regex.VERSION0)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidInput.for_field(field, f"not a valid regular expression: {exc}") from None
    deadline = time.monotonic() + MATCH_TIME_BUDGET
    matching = []
    scan = queryset.prefetch_related(None).order_by()
    rows = scan.annotate(**{_TEXT: Cast(field, output_field=TextField())}).values_list("pk", _TEXT)
    for pk, text in rows.iterator():
        if text is None:
            continue  # REGEXP on NULL is not a match
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            if compiled.search(text, timeout=remaining) is not None:
                matching.append(pk)
        except TimeoutError:
            raise InvalidInput.for_field(
                field, f"regular expression takes too long to match (over {MATCH_TIME_BUDGET:g} s); simplify it"
            ) from None
    return queryset.filter(pk__in=matching)


class RegexFilter(django_filters.CharFilter):
    """A list filter matched as a bounded regular expression (see :func:`regex_filter`)."""

    def filter(self, qs: QuerySet, value: str) -> QuerySet:
        if value in (None, ""):
            return qs
        return regex_filter(qs, self.field_name, value)
