from django.core.management.base import BaseCommand, CommandError

from karbor_site.errors import KarborError
from karbor_site.tenancy.services import token_revoke


class Command(BaseCommand):
    help = "Revoke API tokens: one by its value or prefix, or all tokens of a user."

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--token")
        group.add_argument("--prefix")
        group.add_argument("--user")

    def handle(self, *args, token, prefix, user, **options):
        try:
            count = token_revoke(raw_token=token, prefix=prefix, username=user)
        except KarborError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"revoked {count} token(s)")
