"""Shared model plumbing: Karbor's soft-delete columns and string UUID keys."""
from __future__ import annotations

import json
import uuid

from django.db import models
from django.utils import timezone


def new_uuid() -> str:
    return str(uuid.uuid4())


def is_uuid_like(value: str) -> bool:
    """Karbor's ``is_uuid_like``: 32 hex digits, with or without dashes."""
    try:
        return str(uuid.UUID(str(value))).replace("-", "") == str(value).replace("-", "").lower()
    except (TypeError, ValueError, AttributeError):
        return False


class LiveManager(models.Manager):
    """Rows that are not soft-deleted: what the API and services see."""

    def get_queryset(self):
        return super().get_queryset().filter(deleted=False)


class SoftDeleteModel(models.Model):
    """Karbor's ``created_at/updated_at/deleted_at/deleted`` columns.

    ``objects`` hides soft-deleted rows; ``all_objects`` sees them (admin, purge).
    """

    created_at = models.DateTimeField(null=True, blank=True, default=timezone.now, editable=False)
    updated_at = models.DateTimeField(null=True, blank=True, auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted = models.BooleanField(default=False)

    objects = LiveManager()
    all_objects = models.Manager()

    class Meta:
        abstract = True

    def soft_delete(self) -> None:
        self.deleted = True
        self.deleted_at = timezone.now()
        self.save(update_fields=["deleted", "deleted_at", "updated_at"])


class JSONTextField(models.TextField):
    """JSON kept in a ``TEXT`` column, as Karbor's tables declare it (not a native json/jsonb type)."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else json.loads(value)

    def to_python(self, value):
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def get_prep_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True)

    def value_to_string(self, obj):
        return self.get_prep_value(self.value_from_object(obj))

    def formfield(self, **kwargs):
        from django.forms import JSONField as JSONFormField

        return JSONFormField(**kwargs)
