"""``manage.py restore CHECKPOINT_ID [--target PATH]``: restore a checkpoint in this process."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from karbor_site.errors import KarborError
from protection.models import Checkpoint
from restores.flows import restore_run
from operations.workers import worker_name
from operations.progressbar import ProgressBar
from restores.services import restore_create


class Command(BaseCommand):
    help = (
        "Restore a checkpoint now, in this process (no worker needed), with the same checks and flow as the API. "
        "Without --target the directories go back to their original location. Exits non-zero when the restore fails."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("checkpoint_id")
        parser.add_argument("--target", default=None, help="A declared restore target directory, or a path inside one.")
        parser.add_argument("--provider", default=None, help="Provider id (default: the checkpoint's).")
        parser.add_argument("--project", default=None, help="Project the restore belongs to (default: the checkpoint's).")
        parser.add_argument(
            "--parameters", default="{}", help='Restore parameters as JSON, e.g. \'{"Filesystem::Directory": {"overwrite": false}}\'.'
        )

    def handle(self, *args, checkpoint_id: str, target, provider, project, parameters, **options) -> None:
        checkpoint = Checkpoint.objects.filter(pk=checkpoint_id).first()
        if checkpoint is None and (provider is None or project is None):
            raise CommandError(f"checkpoint {checkpoint_id} is not in the catalog")
        try:
            parsed = json.loads(parameters)
        except ValueError as exc:
            raise CommandError(f"--parameters: not valid JSON: {exc}") from None
        try:
            restore = restore_create(
                project_id=project or checkpoint.project_id,
                provider_id=provider or checkpoint.provider_id,
                checkpoint_id=checkpoint_id,
                restore_target=target,
                parameters=parsed,
                is_cloud_admin=True,
                enqueue=False,
            )
        except KarborError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"restore {restore.id} of checkpoint {checkpoint_id} started")
        bar = ProgressBar(self.stdout, label="restoring")
        try:
            restore = restore_run(restore_id=restore.id, worker=worker_name(label="manage.py"), on_progress=bar)
        finally:
            bar.close()
        for key, status in sorted(restore.resources_status.items()):
            reason = restore.resources_reason.get(key)
            self.stdout.write(f"  {key}: {status}" + (f" ({reason})" if reason else ""))
        if restore.status != "success":
            raise CommandError(f"restore {restore.id} {restore.status}")
        self.stdout.write(self.style.SUCCESS(f"restore {restore.id} success"))
