"""bootstrap_demo tells whether the demo project may use KARBOR_FS_SOURCES (deny by default)."""
from __future__ import annotations

import io

from django.core.management import call_command


def run_bootstrap() -> str:
    out = io.StringIO()
    call_command("bootstrap_demo", stdout=out)
    return out.getvalue()


def test_demo_named_in_fs_projects_is_told_it_sees_the_sources(db, settings, tmp_path):
    settings.KARBOR_FS_SOURCES = [str(tmp_path)]
    settings.KARBOR_FS_PROJECTS = ["demo"]
    assert "directories: 1 from KARBOR_FS_SOURCES (KARBOR_FS_PROJECTS names this project)" in run_bootstrap()


def test_demo_not_named_is_told_how_to_see_the_sources(db, settings, tmp_path):
    settings.KARBOR_FS_SOURCES = [str(tmp_path)]
    settings.KARBOR_FS_PROJECTS = []
    assert "set KARBOR_FS_PROJECTS=demo (make run does)" in run_bootstrap()
