"""A read-only mirror of the configured providers, so operators see them in the admin.

The provider files are the source of truth; ``providers_sync()`` rewrites this table from them.
"""
from __future__ import annotations

from django.db import models


class Provider(models.Model):
    """One provider as loaded from its YAML file (mirrored by ``providers_sync``)."""

    id = models.CharField(max_length=36, primary_key=True)
    name = models.CharField(max_length=255)
    description = models.CharField(max_length=255, null=True, blank=True)
    enabled = models.BooleanField(default=True)
    bank_type = models.CharField(max_length=16)
    bank_location = models.CharField(max_length=1024)
    bank_encrypted = models.BooleanField(default=False, help_text="A passphrase variable is named and set.")
    resource_types = models.CharField(max_length=1024, blank=True, default="")
    plugins = models.JSONField(default=dict, help_text="Resource type → plugin class.")
    extended_info_schema = models.JSONField(default=dict)
    source_file = models.CharField(max_length=1024)
    synced_at = models.DateTimeField()

    class Meta:
        db_table = "providers"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"
