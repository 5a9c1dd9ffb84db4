from django.core.management.base import BaseCommand, CommandError

from karbor_site.errors import KarborError
from karbor_site.tenancy.services import token_issue


class Command(BaseCommand):
    help = "Issue an API token for a user and print only the token (it is stored hashed, so keep it)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--ttl-hours", type=int, default=None, help="Lifetime; default KARBOR_TOKEN_TTL_HOURS.")
        parser.add_argument("--description", default="issued by manage.py issue_token")

    def handle(self, *args, username, ttl_hours, description, **options):
        if ttl_hours is not None and ttl_hours < 1:
            raise CommandError("--ttl-hours must be at least 1")
        try:
            token = token_issue(username=username, ttl_hours=ttl_hours, description=description)
        except KarborError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(token)
