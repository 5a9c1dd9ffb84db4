"""The worker registry: Celery workers and beat register in the ``services`` table and heartbeat.

A service is ``up`` while its last heartbeat (``modified_at``) is younger than
KARBOR_SERVICE_DOWN_TIME. Operators can disable the scheduler (``karbor-operationengine``)
with a reason, as in Karbor: its scheduled ticks are then logged as skipped
(``triggers.engine``). They can also disable a worker (``karbor-protection``, beyond Karbor):
the worker stops consuming its queues within a heartbeat interval (finishing the task it
runs) and consumes again once enabled; the messages wait in the broker for other workers.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from karbor_site.errors import InvalidInput, NotFound
from protection.models import Service

PROTECTION_BINARY = "karbor-protection"
OPERATION_ENGINE_BINARY = "karbor-operationengine"
UPDATABLE_BINARIES = (OPERATION_ENGINE_BINARY, PROTECTION_BINARY)


def service_is_up(service: Service) -> bool:
    return timezone.now() - service.modified_at <= timedelta(seconds=settings.KARBOR_SERVICE_DOWN_TIME)


@transaction.atomic
def service_register(*, host: str, binary: str, topic: str | None = None) -> Service:
    """Create or revive the row for (host, binary) and count a first heartbeat."""
    service = Service.objects.select_for_update().filter(host=host, binary=binary).first()
    now = timezone.now()
    if service is None:
        return Service.objects.create(host=host, binary=binary, topic=topic or binary, modified_at=now, report_count=1)
    service.modified_at = now
    service.report_count = F("report_count") + 1
    service.save(update_fields=["modified_at", "report_count", "updated_at"])
    service.refresh_from_db()
    return service


def service_heartbeat(*, service_id: int) -> bool:
    """Refresh the heartbeat; False when the row is gone (then the caller registers again)."""
    touched = Service.objects.filter(pk=service_id).update(
        modified_at=timezone.now(), report_count=F("report_count") + 1
    )
    return touched == 1


def service_list(*, host: str | None = None, binary: str | None = None) -> list[Service]:
    services = Service.objects.all().order_by("id")
    if host:
        services = services.filter(host=host)
    if binary:
        services = services.filter(binary=binary)
    return list(services)


@transaction.atomic
def service_update(*, service_id: int, status: str | None, disabled_reason: str | None) -> Service:
    """Karbor's PUT /os-services/{id}: enable or disable the operation engine, with a reason."""
    service = Service.objects.select_for_update().filter(pk=service_id).first()
    if service is None:
        raise NotFound(f"Service {service_id} could not be found.")
    if service.binary not in UPDATABLE_BINARIES:
        raise InvalidInput.for_field("id", f"only {', '.join(UPDATABLE_BINARIES)} services can be updated")
    if status == "enabled":
        if disabled_reason:
            raise InvalidInput.for_field("disabled_reason", "cannot be given when enabling a service")
        service.disabled, service.disabled_reason = False, ""
    elif status == "disabled":
        service.disabled, service.disabled_reason = True, (disabled_reason or "")[:255]
    else:
        raise InvalidInput.for_field("status", "must be 'enabled' or 'disabled'")
    service.save(update_fields=["disabled", "disabled_reason", "updated_at"])
    return service


class Heartbeat:
    """Registers a process and refreshes its heartbeat from a daemon thread until stopped.

    ``on_disabled_change(disabled)`` is called at start when the row is disabled, then on every
    change of its ``disabled`` flag seen at a heartbeat.
    """

    def __init__(
        self, *, host: str, binary: str, interval: int | None = None,
        on_disabled_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.host, self.binary = host, binary
        self.interval = interval or settings.KARBOR_SERVICE_REPORT_INTERVAL
        self.service_id: int | None = None
        self.on_disabled_change = on_disabled_change
        self.disabled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        service = service_register(host=self.host, binary=self.binary)
        self.service_id = service.pk
        self._follow_disabled(service.disabled)
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.binary}", daemon=True)
        self._thread.start()

    def _follow_disabled(self, disabled: bool) -> None:
        if disabled != self.disabled:
            self.disabled = disabled
            if self.on_disabled_change is not None:
                self.on_disabled_change(disabled)

    def beat(self) -> None:
        """One heartbeat: refresh the row (register again when it is gone) and follow its disabled flag."""
        if not service_heartbeat(service_id=self.service_id):
            self.service_id = service_register(host=self.host, binary=self.binary).pk
        disabled = Service.objects.filter(pk=self.service_id).values_list("disabled", flat=True).first()
        self._follow_disabled(bool(disabled))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                close_old_connections()
                self.beat()
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the heartbeat thread
                import logging

                logging.getLogger(__name__).exception("heartbeat of %s failed; retrying", self.binary)

    def stop(self) -> None:
        self._stop.set()
