"""``manage.py copy PLAN_ID --to PROVIDER``: copy a plan's checkpoints into another provider's bank, in this process."""
from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from karbor_site.errors import KarborError
from operations.progressbar import ProgressBar
from operations.workers import worker_name
from plans.models import Plan
from protection import copies


class Command(BaseCommand):
    help = (
        "Copy every available checkpoint of PLAN_ID that the destination provider does not hold yet "
        "(or only --checkpoint) into the bank of --to, sending only the chunks that bank lacks. Runs in this "
        "process (no worker needed); prints each new checkpoint's id and final status; exits 1 on a failure."
    )

    def add_arguments(self, parser):
        parser.add_argument("plan_id")
        parser.add_argument("--to", required=True, metavar="PROVIDER_ID", help="The destination provider.")
        parser.add_argument("--checkpoint", metavar="CHECKPOINT_ID", help="Copy only this checkpoint of the plan.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar even on a terminal.")

    def handle(self, *args, plan_id, to, checkpoint, no_progress, **options):
        plan = Plan.objects.filter(pk=plan_id).first()
        if plan is None:
            raise CommandError(f"Plan {plan_id} could not be found.")
        parameters = {copies.DESTINATION: to}
        if checkpoint:
            parameters["checkpoint_id"] = checkpoint
        try:
            result = copies.checkpoint_copy_create(
                project_id=plan.project_id, provider_id=plan.provider_id, plan_id=plan.id, parameters=parameters,
                enqueue=False,
            )
        except KarborError as exc:
            raise CommandError(exc.message) from None
        if not result["checkpoint_id"]:
            self.stdout.write(f"nothing to copy: provider {to} holds every available checkpoint of the plan")
            return
        failed = False
        for pair in result["checkpoint_id"]:
            self.stdout.write(f"checkpoint {pair['checkpoint_copy_id']}: copying {pair['checkpoint_protect_id']}")
            bar = ProgressBar(self.stdout, label="copying")
            bar.enabled = bar.enabled and not no_progress
            try:
                copy = copies.checkpoint_copy_run(
                    checkpoint_id=pair["checkpoint_copy_id"], worker=worker_name(label="manage.py"), echo=bar,
                )
            finally:
                bar.close()
            self.stdout.write(f"checkpoint {copy.id}: {copy.status}")
            if copy.status != "available":
                failed = True
                self.stderr.write(copy.status_reason or str(copy.resources_reason))
        if failed:
            sys.exit(1)
