from django.core.management.base import BaseCommand, CommandError

from karbor_site.errors import KarborError
from karbor_site.tenancy.services import project_create


class Command(BaseCommand):
    help = "Create a project (tenant) with the given id; re-running it is harmless."

    def add_arguments(self, parser):
        parser.add_argument("project_id", help="The id clients use in /v1/{project_id}/ (Keystone-like).")
        parser.add_argument("--name", default="", help="A display name.")
        parser.add_argument("--description", default="")

    def handle(self, *args, project_id, name, description, **options):
        try:
            project = project_create(project_id=project_id, name=name, description=description)
        except KarborError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(project.id)
