from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from providers.services import providers_sync


class Command(BaseCommand):
    help = "Re-read the provider files and mirror them into the providers table (shown in the admin)."

    def handle(self, *args, **options):
        try:
            rows = providers_sync(reload_files=True)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        for row in rows:
            state = "enabled" if row.enabled else "disabled"
            self.stdout.write(f"{row.id}  {row.name}  [{state}]  {row.resource_types}  bank={row.bank_location}")
        self.stdout.write(self.style.SUCCESS(f"{len(rows)} provider(s) synced."))
