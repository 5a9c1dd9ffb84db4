"""``manage.py protect PLAN_ID``: take a checkpoint of a plan now, in this process."""
from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from karbor_site.errors import KarborError
from operations.workers import worker_name
from plans.models import Plan
from protection import flows, services
from operations.progressbar import ProgressBar


class Command(BaseCommand):
    help = (
        "Create a checkpoint of PLAN_ID and run the protect flow in this process (no worker needed). "
        "Prints the checkpoint id and its final status; exits 1 when it ends in error."
    )

    def add_arguments(self, parser):
        parser.add_argument("plan_id")
        parser.add_argument("--extra-info", action="append", default=[], metavar="KEY=VALUE",
                            help="Stored in the checkpoint's extra_info (repeatable).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar even on a terminal.")

    def handle(self, *args, plan_id, extra_info, no_progress, **options):
        plan = Plan.objects.filter(pk=plan_id).first()
        if plan is None:
            raise CommandError(f"Plan {plan_id} could not be found.")
        info = {}
        for pair in extra_info:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise CommandError(f"--extra-info {pair!r}: expected KEY=VALUE")
            info[key] = value
        try:
            checkpoint = services.checkpoint_create(
                project_id=plan.project_id, provider_id=plan.provider_id, plan_id=plan.id, extra_info=info,
                enqueue=False,
            )
        except KarborError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"checkpoint {checkpoint.id}: protecting plan {plan.name or plan.id}")
        bar = ProgressBar(self.stdout, label="protecting")
        bar.enabled = bar.enabled and not no_progress
        try:
            result = flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, worker=worker_name(label="manage.py"),
                                                  echo=bar)
        finally:
            bar.close()
        self.stdout.write(f"checkpoint {result.id}: {result.status}")
        if result.status != "available":
            for key, reason in (result.resources_reason or {}).items():
                self.stderr.write(f"  {key}: {reason}")
            if result.status_reason:
                self.stderr.write(result.status_reason)
            sys.exit(1)
