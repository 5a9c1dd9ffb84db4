"""Karbor's list conventions: ``limit``/``marker``/``offset``, ``sort`` or ``sort_key``+``sort_dir``,
and ``<collection>_links`` with a ``next`` href.

Marker pagination is keyset pagination over the requested ordering (with the primary key as
the final tie-breaker), so a page boundary never skips or repeats a row when rows are added.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q, QuerySet
from rest_framework.request import Request

from karbor_site.api.exceptions import InvalidInput

DEFAULT_SORT = (("created_at", "desc"),)


@dataclass
class ListParams:
    limit: int
    marker: str | None = None
    offset: int = 0
    sort: list[tuple[str, str]] = field(default_factory=list)


def parse_list_params(
    request: Request,
    *,
    sort_keys: set[str],
    default_sort: tuple[tuple[str, str], ...] = DEFAULT_SORT,
    allow_offset: bool = True,
) -> ListParams:
    """Read and validate the paging and sorting query parameters; bad values are a 400 naming them."""
    query = request.query_params
    max_limit = settings.KARBOR_MAX_LIMIT
    limit = max_limit
    if "limit" in query:
        limit = _positive_int(query["limit"], "limit", allow_zero=False)
        limit = min(limit, max_limit)
    offset = 0
    if allow_offset and "offset" in query:
        offset = _positive_int(query["offset"], "offset", allow_zero=True)
    marker = query.get("marker") or None

    if "sort" in query and ("sort_key" in query or "sort_dir" in query):
        raise InvalidInput.for_field("sort", "the 'sort' parameter cannot be combined with 'sort_key'/'sort_dir'")
    sort: list[tuple[str, str]] = []
    if "sort" in query:
        for part in query["sort"].split(","):
            part = part.strip()
            if not part:
                continue
            key, _, direction = part.partition(":")
            sort.append((key.strip(), (direction or "desc").strip().lower()))
    elif "sort_key" in query or "sort_dir" in query:
        sort.append((query.get("sort_key", "created_at"), query.get("sort_dir", "desc").lower()))
    else:
        sort = list(default_sort)
    for key, direction in sort:
        if key not in sort_keys:
            raise InvalidInput.for_field("sort", f"unknown sort key {key!r}; allowed: {', '.join(sorted(sort_keys))}")
        if direction not in ("asc", "desc"):
            raise InvalidInput.for_field("sort", f"unknown sort direction {direction!r}; allowed: asc, desc")
    return ListParams(limit=limit, marker=marker, offset=offset, sort=sort)


def _positive_int(raw: str, name: str, *, allow_zero: bool) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidInput.for_field(name, f"must be an integer, got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput.for_field(name, f"must be {'non-negative' if allow_zero else 'positive'}, got {value}")
    return value


def paginate_queryset(queryset: QuerySet, params: ListParams, *, field_map: dict[str, str] | None = None) -> list:
    """Order, apply the marker and offset, and cut one page."""
    field_map = field_map or {}
    ordering = [(field_map.get(key, key), direction) for key, direction in params.sort]
    pk_name = queryset.model._meta.pk.name
    if not any(name in (pk_name, "pk") for name, _ in ordering):
        ordering.append((pk_name, ordering[-1][1] if ordering else "asc"))
    queryset = queryset.order_by(*[f"-{name}" if direction == "desc" else name for name, direction in ordering])
    if params.marker:
        marker_row = queryset.model._default_manager.filter(pk=params.marker).values(*[n for n, _ in ordering]).first()
        if marker_row is None or not queryset.filter(pk=params.marker).exists():
            raise InvalidInput.for_field("marker", f"marker {params.marker} could not be found")
        queryset = queryset.filter(_after_marker(ordering, marker_row))
    start = params.offset
    return list(queryset[start : start + params.limit])


def _after_marker(ordering: list[tuple[str, str]], marker_row: dict) -> Q:
    condition = Q(pk__in=[])
    equal_so_far = Q()
    for name, direction in ordering:
        value = marker_row[name]
        op = "lt" if direction == "desc" else "gt"
        condition |= equal_so_far & Q(**{f"{name}__{op}": value})
        equal_so_far &= Q(**{name: value})
    return condition


def next_links(request: Request, collection_path: str, items: list, params: ListParams, *, id_of=None) -> list[dict]:
    """Karbor adds a ``next`` link when the page is full; it carries the caller's own parameters."""
    if not items or len(items) < params.limit:
        return []
    last = items[-1]
    last_id = id_of(last) if id_of else getattr(last, "pk", None) or last["id"]
    query = {key: value for key, value in request.query_params.items() if key not in ("marker", "offset")}
    query["marker"] = str(last_id)
    href = request.build_absolute_uri(f"{collection_path}?{urlencode(query)}")
    return [{"rel": "next", "href": href}]
