"""``manage.py bootstrap_demo``: a ready-to-use project, member and token for a first run.

``make run`` calls it after ``migrate``. It is idempotent (the project, the user and the
membership are created once), except that each run issues a fresh token: only digests
are stored, so an earlier token can never be shown again.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from karbor_site.errors import KarborError
from karbor_site.env import env_str
from karbor_site.tenancy.management.commands.serve import public_url, resolve_bind
from karbor_site.tenancy.models import Role
from karbor_site.tenancy.services import membership_set, project_create, token_issue


class Command(BaseCommand):
    help = (
        "Create project 'demo' with member 'demo' (password from KARBOR_DEMO_PASSWORD, if set), "
        "an operator superuser 'admin' if KARBOR_ADMIN_PASSWORD is set, and print a fresh token "
        "with ready-to-paste curl and karbor CLI examples."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", default="demo", help="Project id (default: demo).")
        parser.add_argument("--username", default="demo", help="Member user name (default: demo).")
        parser.add_argument("--role", choices=Role.values, default=Role.MEMBER)
        parser.add_argument("--ttl-hours", type=int, default=None, help="Token lifetime; default KARBOR_TOKEN_TTL_HOURS.")
        parser.add_argument("--port", type=int, default=None, help="Port shown in the examples (default as serve).")

    def handle(self, *args, project, username, role, ttl_hours, port, **options):
        if ttl_hours is not None and ttl_hours < 1:
            raise CommandError("--ttl-hours must be at least 1")
        demo_password = env_str("KARBOR_DEMO_PASSWORD")
        admin_password = env_str("KARBOR_ADMIN_PASSWORD")
        try:
            with transaction.atomic():
                project_create(project_id=project, name="Demo project" if project == "demo" else project)
                membership_set(project_id=project, username=username, role=role)
                users = get_user_model().objects
                if demo_password:
                    user = users.get(username=username)
                    user.set_password(demo_password)
                    user.save(update_fields=["password"])
                if admin_password:
                    admin, _ = users.get_or_create(username="admin", defaults={"email": "admin@localhost"})
                    admin.is_staff = admin.is_superuser = True
                    admin.set_password(admin_password)
                    admin.save()
                token = token_issue(username=username, ttl_hours=ttl_hours, description="issued by bootstrap_demo")
        except KarborError as exc:
            raise CommandError(exc.message) from exc

        base = public_url(resolve_bind(port))
        endpoint = f"{base}/v1/{project}"
        login = (
            f"log in at {base}/api-auth/login/ as '{username}' (KARBOR_DEMO_PASSWORD)"
            if demo_password
            else "set KARBOR_DEMO_PASSWORD and re-run to log in with a password"
        )
        admin_line = (
            f"  operator   : 'admin' (superuser) — Django admin at {base}/admin/"
            if admin_password
            else "  operator   : none (set KARBOR_ADMIN_PASSWORD to create superuser 'admin')"
        )
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Karbor demo is ready.",
                    f"  project id : {project}",
                    f"  user       : {username} ({role})",
                    f"  token      : {token}",
                    f"  endpoint   : {endpoint}",
                    admin_line,
                    directories_line(project),
                    "",
                    "Use it (in another terminal, once serve below says it is listening):",
                    f"  export OS_AUTH_TOKEN={token}",
                    f"  curl -s -H \"X-Auth-Token: $OS_AUTH_TOKEN\" {endpoint}/providers",
                    f"  .venv/bin/karbor --os-no-client-auth --karbor-url {endpoint} --os-auth-token \"$OS_AUTH_TOKEN\" provider-list",
                    f"  .venv/bin/karbor --os-no-client-auth --karbor-url {endpoint} --os-auth-token \"$OS_AUTH_TOKEN\" protectable-list",
                    f"  browsable API: {endpoint}/plans — {login}",
                    f"  API docs: {base}/api/docs/",
                    "",
                ]
            )
        )


def directories_line(project: str) -> str:
    """Whether the demo project may use KARBOR_FS_SOURCES: sources are visible only to the projects named."""
    sources = len(settings.KARBOR_FS_SOURCES)
    named = settings.KARBOR_FS_PROJECTS
    if project in named or "*" in named:
        return f"  directories: {sources} from KARBOR_FS_SOURCES (KARBOR_FS_PROJECTS names this project)"
    return (
        f"  directories: none — KARBOR_FS_SOURCES are visible only to the projects KARBOR_FS_PROJECTS names; "
        f"set KARBOR_FS_PROJECTS={project} (make run does)"
    )
