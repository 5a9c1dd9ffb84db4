from django.core.management.base import BaseCommand, CommandError

from karbor_site.services import purge_deleted


class Command(BaseCommand):
    help = "Remove soft-deleted rows (plans, resources, restores, triggers, …) deleted more than DAYS days ago."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be removed.")

    def handle(self, *args, older_than, dry_run, **options):
        if older_than < 0:
            raise CommandError("--older-than must be 0 or more days")
        counts = purge_deleted(older_than_days=older_than, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        for table, count in counts.items():
            self.stdout.write(f"{table}: {verb} {count}")
