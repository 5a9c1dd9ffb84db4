"""Soft-delete purge and the shared listing rules (limit, marker, sort), on a real table."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIRequestFactory

from karbor_site.errors import InvalidInput
from karbor_site.api.listing import paginate_queryset, parse_list_params
from restores.models import Restore

pytestmark = pytest.mark.django_db


def make_restore(**fields):
    defaults = {"project_id": "p1", "provider_id": "x", "checkpoint_id": "y"}
    defaults.update(fields)
    return Restore.objects.create(**defaults)


def params(query: str, sort_keys=frozenset({"id", "status", "created_at"})):
    from rest_framework.request import Request

    request = Request(APIRequestFactory().get(f"/x?{query}"))
    return parse_list_params(request, sort_keys=set(sort_keys))


def test_purge_removes_only_rows_deleted_before_the_cutoff():
    old, recent, live = make_restore(), make_restore(), make_restore()
    old.soft_delete()
    recent.soft_delete()
    Restore.all_objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(days=40))
    call_command("purge_deleted", "--older-than", "30")
    remaining = set(Restore.all_objects.values_list("pk", flat=True))
    assert remaining == {recent.pk, live.pk}


def test_soft_deleted_rows_are_hidden_from_the_default_manager():
    row = make_restore()
    row.soft_delete()
    assert not Restore.objects.filter(pk=row.pk).exists()
    assert Restore.all_objects.filter(pk=row.pk, deleted=True).exists()


def test_marker_pagination_walks_every_row_once_in_order():
    base = timezone.now()
    rows = [make_restore(created_at=base - timedelta(minutes=i % 3)) for i in range(7)]
    seen, marker = [], None
    while True:
        query = "limit=3" + (f"&marker={marker}" if marker else "")
        page = paginate_queryset(Restore.objects.all(), params(query))
        if not page:
            break
        seen.extend(page)
        marker = page[-1].pk
    assert sorted(r.pk for r in seen) == sorted(r.pk for r in rows)
    assert len(seen) == len(rows)
    stamps = [r.created_at for r in seen]
    assert stamps == sorted(stamps, reverse=True)


def test_sort_parameter_orders_ascending():
    for status in ("success", "fail", "in_progress"):
        make_restore(status=status)
    page = paginate_queryset(Restore.objects.all(), params("sort=status:asc"))
    assert [r.status for r in page] == ["fail", "in_progress", "success"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("sort=name", "sort"),
        ("sort=status:sideways", "sort"),
        ("sort=status&sort_key=id", "sort"),
    ],
)
def test_bad_list_parameters_name_the_parameter(query, field):
    with pytest.raises(InvalidInput) as excinfo:
        params(query)
    assert field in excinfo.value.fields


def test_unknown_marker_is_a_400_naming_marker():
    make_restore()
    with pytest.raises(InvalidInput) as excinfo:
        paginate_queryset(Restore.objects.all(), params("marker=00000000-0000-0000-0000-000000000000"))
    assert "marker" in excinfo.value.fields
