"""What the runner needs to know about one kind of operation (``Kind``), what its hooks get (``Run``),
and the registry of kinds."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from operations.progress import ProgressRecorder
from protection.models import OperationLog

if TYPE_CHECKING:
    from celery import Task

    from operations.models import OperationRow

RESOURCE_AVAILABLE = "available"


@dataclass(eq=False)
class Kind:
    """One kind of long-running operation: its row, its statuses, its log, its steps.

    * ``prepare(run)`` opens what the operation needs (provider, bank, writer…, kept in
      ``run.state``) and returns the ``(key, item)`` pairs to work through, ``key`` being the
      ``"<type>#<id>"`` of ``resources_status``; raising fails the operation with the reason.
    * ``step(run, item)`` does one resource; it returns the details kept for it (saved info,
      restore details) or raises: a ``resource_errors`` exception fails that resource only.
    * ``commit(run)`` runs when every resource succeeded, before the guarded finish; it
      returns further values for the row (raising fails the operation).
    * ``undo(run)`` runs when the guarded finish found the row no longer ours after
      ``commit`` (the reaper took it): undo what ``commit`` made visible.
    * ``cleanup(run)`` always runs last (close a writer…).
    * ``reconcile(row)`` lets the reaper finish a dead worker's row as a success instead of
      failing it (values for the row) when the work is in fact complete; None to fail it.
    """

    name: str
    model: type[OperationRow]
    running: str
    success: str
    failure: str
    operation_type: str
    task_name: str
    prepare: Callable[[Run], Iterable[tuple[str, Any]]]
    step: Callable[[Run, Any], dict | None]
    label: str = "Operation"
    resource_running: str = "running"
    resource_errors: tuple[type[BaseException], ...] = (Exception,)
    commit: Callable[[Run], dict | None] | None = None
    undo: Callable[[Run], None] | None = None
    cleanup: Callable[[Run], None] | None = None
    reconcile: Callable[[OperationRow], dict | None] | None = None
    # The OperationLog column that holds this row's id (``id`` when the log shares it).
    log_key: str = "checkpoint_id"
    # Put the per-resource details into the log's ``extra_info["resources"]``.
    log_details: bool = False
    # Rows of this kind read their checkpoint (``checkpoint_id``): it cannot be deleted meanwhile.
    holds_checkpoint: bool = False
    # The column of this kind's rows that names the checkpoint they read.
    holds_field: str = "checkpoint_id"
    task: Task | None = field(default=None, repr=False)

    @property
    def has_status_reason(self) -> bool:
        return any(f.name == "status_reason" for f in self.model._meta.concrete_fields)

    @property
    def has_progress_columns(self) -> bool:
        return any(f.name == "bytes_done" for f in self.model._meta.concrete_fields)


@dataclass
class Run:
    """One claimed operation while it runs: what the kind's hooks get."""

    kind: Kind
    row: Any
    worker: str
    log: OperationLog
    progress: ProgressRecorder
    statuses: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # the kind's own (provider, bank, writer…)

    @property
    def failed(self) -> list[str]:
        return [key for key, value in self.statuses.items() if value != RESOURCE_AVAILABLE]

    def save_resources(self) -> None:
        """Guarded write of the per-resource status and reasons (and a heartbeat)."""
        self.kind.model.all_objects.filter(pk=self.row.pk, status=self.kind.running, worker=self.worker).update(
            resources_status=dict(self.statuses), resources_reason=dict(self.reasons), heartbeat_at=timezone.now()
        )

    def still_ours(self) -> bool:
        """Guarded heartbeat: False when the reaper (or anyone) took the row meanwhile."""
        return self.kind.model.all_objects.filter(pk=self.row.pk, status=self.kind.running, worker=self.worker).update(
            heartbeat_at=timezone.now()
        ) == 1


_kinds: dict[str, Kind] = {}


def add_kind(kind: Kind) -> None:
    """Record a kind (``operations.runner.register`` calls this and builds its task)."""
    if kind.name in _kinds and _kinds[kind.name] is not kind:
        raise ValueError(f"operation kind {kind.name!r} is registered twice")
    _kinds[kind.name] = kind


def registered_kinds() -> list[Kind]:
    return list(_kinds.values())


def kind_named(name: str) -> Kind:
    return _kinds[name]
