"""The suite runs on the database it was asked to run on (``make test`` runs it twice)."""
import os

import pytest
from django.db import connection


@pytest.mark.django_db
def test_database_vendor_matches_request():
    # make test sets KARBOR_EXPECT_DB_VENDOR for each run, so a run that was meant for
    # PostgreSQL but silently fell back to SQLite fails here instead of passing.
    expected = os.environ.get("KARBOR_EXPECT_DB_VENDOR")
    if not expected:
        url = os.environ.get("KARBOR_DATABASE_URL", "sqlite:")
        expected = "postgresql" if url.startswith(("postgres", "pgsql")) else url.split(":", 1)[0]
    assert connection.vendor == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone()[0] == 1
