from django.core.management.base import BaseCommand, CommandError

from karbor_site.errors import KarborError
from karbor_site.tenancy.models import Role
from karbor_site.tenancy.services import membership_set


class Command(BaseCommand):
    help = "Give a user a role in a project, creating the user if it does not exist."

    def add_arguments(self, parser):
        parser.add_argument("project_id")
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, default=Role.MEMBER)

    def handle(self, *args, project_id, username, role, **options):
        try:
            membership = membership_set(project_id=project_id, username=username, role=role)
        except KarborError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(str(membership))
