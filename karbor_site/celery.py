"""The Celery application shared by the worker, beat and the API (which only enqueues)."""
import os
import socket

from celery import Celery
from celery.signals import beat_init, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "karbor_site.settings")

app = Celery("karbor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _start_heartbeat(host: str, binary: str, on_disabled_change=None) -> None:
    # Imported late: Django must be set up (the worker does it before these signals fire).
    from protection.registry import Heartbeat

    heartbeat = Heartbeat(host=host, binary=binary, on_disabled_change=on_disabled_change)
    heartbeat.start()
    _heartbeats.append(heartbeat)


def _follow_service_state(hostname: str, queues: list[str]):
    """A disabled worker takes no new work: it stops consuming its queues until enabled again.

    Sent as a remote-control command to this worker alone, so the worker's own event loop (not
    the heartbeat thread, which does not own the broker connection) changes its consumers.
    """
    import logging

    def follow(disabled: bool) -> None:
        for queue in queues:
            if disabled:
                app.control.cancel_consumer(queue, destination=[hostname], reply=False)
            else:
                app.control.add_consumer(queue, destination=[hostname], reply=False)
        logging.getLogger(__name__).warning(
            "%s is %s in os-services: %s consuming %s", hostname, "disabled" if disabled else "enabled",
            "stopped" if disabled else "resumed", ", ".join(queues),
        )

    return follow


_heartbeats: list = []


@worker_ready.connect
def register_worker(sender=None, **kwargs) -> None:
    """Every worker appears in `services` (GET /os-services) and heartbeats while it lives."""
    from protection.registry import PROTECTION_BINARY

    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    consumer = getattr(sender, "task_consumer", None)
    queues = [queue.name for queue in consumer.queues] if consumer is not None else [app.conf.task_default_queue]
    _start_heartbeat(hostname, PROTECTION_BINARY, _follow_service_state(hostname, queues))
    _reap_at_start()


def _reap_at_start() -> None:
    """A worker that starts fails what dead workers left running (the beat entry covers the rest)."""
    import logging

    from operations.reaper import reap_dead_flows

    try:
        reaped = reap_dead_flows()
    except Exception:  # noqa: BLE001 - a failed sweep must not keep the worker from serving
        logging.getLogger(__name__).exception("reaper at worker start-up failed")
        return
    if reaped:
        logging.getLogger(__name__).warning("reaped at start-up: %s", reaped.as_dict())


@beat_init.connect
def register_beat(sender=None, **kwargs) -> None:
    from protection.registry import OPERATION_ENGINE_BINARY

    _start_heartbeat(socket.gethostname(), OPERATION_ENGINE_BINARY)
    # The system-owned schedule (idempotent; touches only its own row).
    from operations.reaper import reaper_schedule_ensure

    reaper_schedule_ensure()
    from triggers.schedule import resync_schedule_ensure

    resync_schedule_ensure()


@worker_shutdown.connect
def stop_heartbeats(**kwargs) -> None:
    for heartbeat in _heartbeats:
        heartbeat.stop()
