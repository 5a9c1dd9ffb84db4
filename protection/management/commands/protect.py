"""``manage.py protect PLAN_ID``: take a checkpoint of a plan now, in this process."""
from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from karbor_site.api.exceptions import KarborError
from plans.models import Plan
from protection import flows, services


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


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
        tty = not no_progress and hasattr(self.stdout, "isatty") and self.stdout.isatty()
        echo = self._progress_bar if tty else None
        result = flows.checkpoint_protect_run(checkpoint_id=checkpoint.id, echo=echo)
        if tty:
            self.stdout.write("")
        self.stdout.write(f"checkpoint {result.id}: {result.status}")
        if result.status != "available":
            for key, reason in (result.resources_reason or {}).items():
                self.stderr.write(f"  {key}: {reason}")
            if result.status_reason:
                self.stderr.write(result.status_reason)
            sys.exit(1)

    def _progress_bar(self, progress) -> None:
        width = 30
        if progress.bytes_total:
            fraction = min(1.0, progress.bytes_done / progress.bytes_total)
            bar = "#" * int(fraction * width)
            text = f"[{bar:<{width}}] {fraction * 100:5.1f}%"
        else:
            text = "[working]"
        line = f"\r{text} {_human(progress.bytes_done)} / {_human(progress.bytes_total)}, {progress.items_done} items"
        self.stdout.write(line, ending="")
        self.stdout.flush()
