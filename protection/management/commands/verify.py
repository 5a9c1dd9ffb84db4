"""``manage.py verify CHECKPOINT_ID``: re-read and authenticate every byte of a checkpoint, in this process."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from karbor_site.errors import KarborError
from protection.models import Checkpoint
from operations.workers import worker_name
from protection.verifications.flows import verification_run
from protection.verifications.services import verification_create
from operations.progressbar import ProgressBar


class Command(BaseCommand):
    help = (
        "Verify a checkpoint now, in this process: every chunk of every item is read back, authenticated and "
        "re-hashed. Records a verification and its operation log. Exits non-zero when the checkpoint is damaged."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("checkpoint_id")

    def handle(self, *args, checkpoint_id: str, **options) -> None:
        checkpoint = Checkpoint.objects.filter(pk=checkpoint_id).first()
        if checkpoint is None:
            raise CommandError(f"checkpoint {checkpoint_id} is not in the catalog")
        try:
            verification = verification_create(
                project_id=checkpoint.project_id,
                provider_id=checkpoint.provider_id,
                checkpoint_id=checkpoint.id,
                is_cloud_admin=True,
                enqueue=False,
            )
        except KarborError as exc:
            raise CommandError(exc.message) from None
        bar = ProgressBar(self.stdout, label="verifying")
        try:
            verification = verification_run(
                verification_id=verification.id, worker=worker_name(label="manage.py"), on_progress=bar
            )
        finally:
            bar.close()
        for key, status in sorted(verification.resources_status.items()):
            reason = verification.resources_reason.get(key)
            self.stdout.write(f"  {key}: {status}" + (f" ({reason})" if reason else ""))
        if verification.status != "success":
            raise CommandError(f"verification {verification.id} of checkpoint {checkpoint_id}: {verification.status}")
        self.stdout.write(self.style.SUCCESS(f"verification {verification.id} of checkpoint {checkpoint_id}: success"))
